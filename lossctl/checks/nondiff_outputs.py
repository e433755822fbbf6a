"""`nondiff_outputs`: with several outputs, the non-differentiable ones are declared so, and backward
takes a grad slot for each.

A Function returning `(loss, count)` or `(values, indices)` must mark the count with
`ctx.mark_non_differentiable` (integer and bool outputs are never differentiable) and still accept
one grad per output in backward (None or zeros for those). A float output that requires grad but
is piecewise constant in the inputs, and whose grad backward ignores, is a count, mask or index
left unmarked: autograd builds a graph through it and a loss that adds it trains on nothing.
A differentiable output whose grad backward ignores although it changes with the inputs loses
its gradient silently.
"""

from __future__ import annotations

import torch

from lossctl.case import Case
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, require_differentiable_inputs, require_function, sqrt_eps
from lossctl.inputs import derive_seed
from lossctl.loader import describe_exception
from lossctl.report import Outcome

MARK_HINT = "mark it with ctx.mark_non_differentiable(...) in forward (backward then gets None or zeros for it)"


def check_nondiff_outputs(case: Case) -> Outcome:
    require_function(case, "mark_non_differentiable")
    require_differentiable_inputs(case)
    values = case.fresh()
    outputs = case.call(values)
    tensors = [k for k, o in enumerate(outputs) if isinstance(o, torch.Tensor)]
    if len(tensors) < 2:
        raise Skip("one output: nothing to mark non-differentiable")
    positions = case.output_positions(outputs)
    fixed = [k for k in tensors if k not in positions]
    kinds = ", ".join(
        f"output {k} {dtype_name(outputs[k].dtype)} {'differentiable' if k in positions else 'non-differentiable'}"
        for k in tensors
    )
    cotangents = case.random_cotangents([outputs[p] for p in positions], "nondiff_outputs")
    try:
        case.vjp(values, cotangents)
    except TypeError as error:
        if "positional argument" not in str(error):
            raise
        return Outcome.failed(
            f"backward does not take one grad per output ({len(outputs)} outputs: {kinds}): "
            f"{describe_exception(error)}",
            hint="backward receives a grad for every output, the non-differentiable ones included (None or "
            "zeros): def backward(ctx, grad_loss, grad_count)",
            data={"outputs": len(outputs)},
        )
    for k, position in enumerate(positions):
        only = [c if j == k else torch.zeros_like(c) for j, c in enumerate(cotangents)]
        _, grads = case.vjp(case.fresh(), only)
        if any(g is not None and bool(g.ne(0).any()) for g in grads):
            continue
        moves = _moves(case, position)
        out = outputs[position]
        if moves:
            return Outcome.failed(
                f"backward ignores the grad of output {position} ({tuple(out.shape)} {dtype_name(out.dtype)}), "
                "which changes with the inputs: a loss that uses it gets no gradient from it",
                hint="return its contribution in backward; if it is only for logging, mark it with "
                "ctx.mark_non_differentiable(...) in forward",
                data={"output": position},
            )
        return Outcome.failed(
            f"output {position} ({tuple(out.shape)} {dtype_name(out.dtype)}) requires grad, but it is piecewise "
            "constant in the inputs and backward ignores its grad: a count, mask or index left unmarked",
            hint=MARK_HINT + "; did you mark another output instead?" * bool(fixed),
            data={"output": position},
        )
    return Outcome.passed(
        f"{kinds}; backward takes a grad for each and uses every differentiable one",
        data={"non_differentiable": fixed},
    )


def _moves(case: Case, position: int) -> bool:
    """Whether output `position` changes when the differentiable inputs move a little (a random
    direction, √ε of the dtype relative to their largest element, both ways)."""
    gen = torch.Generator().manual_seed(derive_seed(case.seed, "nondiff_outputs"))
    steps = {}
    for i in case.diff_indices:
        x = case.values[i].detach()
        direction = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
        steps[i] = sqrt_eps(x.dtype) * (1.0 + float(x.abs().max())) * direction
    shifted = []
    for sign in (1.0, -1.0):
        values = case.fresh()
        for i, step in steps.items():
            values[i] = values[i].detach() + sign * step
        shifted.append(case.call(values)[position].detach())
    return not torch.equal(shifted[0], shifted[1])


CHECK = Check.of("nondiff_outputs", check_nondiff_outputs)

"""`double_backward`: second derivatives are right (gradgradcheck), or double backward refuses loudly."""

from __future__ import annotations

import re

import torch
from torch.autograd.gradcheck import GradcheckError

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import cutting_line, float64_values, jacobian_power, mode_text
from lossctl.loader import describe_exception
from lossctl.report import Outcome

ONCE_DIFFERENTIABLE = "backward is @once_differentiable: double backward raises, which is safe"
NO_GRAD_HINT = (
    "decorate backward with @once_differentiable (from torch.autograd.function): double backward then "
    "raises, the safe form; or compute backward with differentiable ops on the saved tensors"
)
HINT = (
    "mark backward @once_differentiable if double backward is not supported; otherwise write "
    "backward with differentiable ops on saved tensors (no .detach(), no torch.no_grad())"
)
SLOW_MODE_MAX_INPUTS = 32
"""gradgradcheck's slow mode differentiates backward once per input and grad_output element."""
_MISMATCH = re.compile(r"Jacobian mismatch for output (\d+) with respect to input (\d+)")


def _probe(case: Case) -> Outcome | None:
    """Skip when double backward raises (a gradient penalty then fails loudly: safe); fail when the
    gradients backward returns are not differentiable at all (computed under torch.no_grad() or
    from detached tensors): a gradient penalty then silently drops its second-order term whenever
    anything else in the graph requires grad."""
    dtype = torch.float64
    values = case.fresh(dtype)
    outputs = differentiable_outputs(case.float64_outputs())
    cotangents = [v.requires_grad_() for v in case.random_cotangents(outputs, "double_backward")]
    try:
        _, grads = case.vjp(values, cotangents, dtype, create_graph=True)
        live = [g for g in grads if g is not None and g.requires_grad]
        if any(_has_error_node(g.grad_fn) for g in live):
            raise Skip(ONCE_DIFFERENTIABLE)
        if not live and any(g is not None for g in grads):
            where = cutting_line(case)
            how = f"the graph is cut at {where}" if where else "computed under torch.no_grad() or from detached tensors"
            return Outcome.failed(
                f"backward's gradients are not differentiable ({how}), yet double backward does not raise: "
                "a gradient penalty silently gets a zero second-order term",
                hint=NO_GRAD_HINT,
                data={"cut_at": where},
            )
        inputs = [values[i] for i in case.diff_indices]
        total = sum((g * torch.randn_like(g)).sum() for g in live)
        torch.autograd.grad(total, inputs + cotangents, allow_unused=True)
    except Skip:
        raise
    except Exception as error:
        if "once_differentiable" in str(error):
            raise Skip(ONCE_DIFFERENTIABLE) from None
        raise Skip(f"double backward raises ({describe_exception(error)}), which is safe") from None
    return None


def _has_error_node(node: object, limit: int = 64) -> bool:
    """Whether the graph behind a gradient holds the error node that @once_differentiable plants
    (differentiating through it raises)."""
    seen, stack = 0, [node]
    while stack and seen < limit:
        current = stack.pop()
        seen += 1
        if current is None:
            continue
        if type(current).__name__ in ("Error", "DelayedError"):
            return True
        stack.extend(fn for fn, _ in getattr(current, "next_functions", ()))
    return False


def check_double_backward(case: Case) -> Outcome:
    values = float64_values(case)
    if (refused := _probe(case)) is not None:
        return refused
    tol = case.spec.tolerance
    fast = case.use_fast_mode(max_inputs=SLOW_MODE_MAX_INPUTS, check_id="double_backward")
    settings = mode_text(fast, tol)
    try:
        case.gradgradcheck(values, fast=fast)
    except GradcheckError as error:
        message = str(error)
        match = _MISMATCH.search(message)
        if match:
            what = _describe_mismatch(case, int(match.group(1)), int(match.group(2)))
            where = cutting_line(case)
            cut = f"; the graph is cut at {where}" if where else ""
            detail = f"second derivatives are wrong: {what} ({settings}){cut}"
        else:
            detail = f"{message.strip().splitlines()[0].rstrip(',')} ({settings})"
        return Outcome.failed(detail, hint=HINT, explain=message, data={"gradgradcheck_message": message[:2000]})
    inputs = sum(case.values[i].numel() for i in case.diff_indices)
    power = jacobian_power(fast, inputs, "second-derivative", "H")
    return Outcome.passed(
        f"second derivatives match gradgradcheck ({settings}); {power}",
        data={"fast_mode": fast},
    )


def _describe_mismatch(case: Case, output: int, position: int) -> str:
    names = case.diff_names
    of = f"∂loss/∂{names[output]}" if output < len(names) else f"first-order gradient {output}"
    if position < len(names):
        wrt = f"`{names[position]}`"
    else:
        wrt = "grad_output" if position - len(names) == 0 else f"grad_output {position - len(names)}"
    return f"the derivative of {of} w.r.t. {wrt}"


CHECK = Check.of("double_backward", check_double_backward)

"""`double_backward`: second derivatives are right (gradgradcheck), or double backward refuses loudly."""

from __future__ import annotations

import re

import torch
from torch.autograd.gradcheck import GradcheckError

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import float64_function, float64_values, mode_text
from lossctl.checks.gradcheck import use_fast_mode
from lossctl.loader import describe_exception
from lossctl.report import Outcome

HINT = (
    "mark backward @once_differentiable if double backward is not supported; otherwise write "
    "backward with differentiable ops on saved tensors (no .detach(), no torch.no_grad())"
)
SLOW_MODE_MAX_INPUTS = 32
"""gradgradcheck's slow mode differentiates backward once per input and grad_output element."""
_MISMATCH = re.compile(r"Jacobian mismatch for output (\d+) with respect to input (\d+)")


def _probe(case: Case) -> None:
    """Skip when double backward raises: a gradient penalty then fails loudly, which is safe."""
    dtype = torch.float64
    values = case.fresh(dtype)
    inputs = [values[i] for i in case.diff_indices]
    outputs = differentiable_outputs(case.call(values, dtype))
    cotangents = [v.requires_grad_() for v in case.random_cotangents(outputs, "double_backward")]
    try:
        grads = torch.autograd.grad(outputs, inputs, cotangents, create_graph=True, allow_unused=True)
        live = [g for g in grads if g is not None and g.requires_grad]
        if any(_has_error_node(g.grad_fn) for g in live):
            raise Skip("backward is @once_differentiable: double backward raises, which is safe")
        if not live:
            raise Skip(
                "backward's gradients are not differentiable (computed under no_grad or detached), so "
                "differentiating them raises: safe"
            )
        total = sum((g * torch.randn_like(g)).sum() for g in live)
        torch.autograd.grad(total, inputs + cotangents, allow_unused=True)
    except Skip:
        raise
    except Exception as error:
        if "once_differentiable" in str(error):
            raise Skip("backward is @once_differentiable: double backward raises, which is safe") from None
        raise Skip(f"double backward raises ({describe_exception(error)}), which is safe") from None


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
    _probe(case)
    tol = case.spec.tolerance
    fast = use_fast_mode(case, values, max_inputs=SLOW_MODE_MAX_INPUTS)
    fn, inputs = float64_function(case, values)
    settings = mode_text(fast, tol)
    try:
        torch.autograd.gradgradcheck(fn, inputs, eps=tol.eps, atol=tol.atol, rtol=tol.rtol, fast_mode=fast)
    except GradcheckError as error:
        message = str(error)
        match = _MISMATCH.search(message)
        if match:
            what = _describe_mismatch(case, int(match.group(1)), int(match.group(2)))
            detail = f"second derivatives are wrong: {what} ({settings})"
        else:
            detail = f"{message.strip().splitlines()[0].rstrip(',')} ({settings})"
        return Outcome.failed(detail, hint=HINT, explain=message, data={"gradgradcheck_message": message[:2000]})
    return Outcome.passed(f"second derivatives match gradgradcheck ({settings})")


def _describe_mismatch(case: Case, output: int, position: int) -> str:
    names = case.diff_names
    of = f"∂loss/∂{names[output]}" if output < len(names) else f"first-order gradient {output}"
    if position < len(names):
        wrt = f"`{names[position]}`"
    else:
        wrt = "grad_output" if position - len(names) == 0 else f"grad_output {position - len(names)}"
    return f"the derivative of {of} w.r.t. {wrt}"


CHECK = Check(
    "double_backward",
    "gradgradcheck: double backward is right, or refuses loudly (@once_differentiable)",
    check_double_backward,
)

"""`double_backward`: second derivatives are right (gradgradcheck), or double backward refuses loudly."""

from __future__ import annotations

import re
import time

import torch
from torch.autograd.gradcheck import GradcheckError

from lossctl.budget import GRADGRAD_SLOW_MAX_INPUTS, slow_mode_passes
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
    deadline = time.monotonic() + case.allotted_s("double_backward")
    allotment = case.allotment("double_backward")
    inputs = sum(case.values[i].numel() for i in case.diff_indices)
    if allotment is not None and allotment.reduced and inputs > GRADGRAD_SLOW_MAX_INPUTS:
        return _shrunk_only(case, deadline, allotment.passes, allotment.nominal)
    values = float64_values(case)
    if (refused := _probe(case)) is not None:
        return refused
    fast = case.use_fast_mode(max_inputs=GRADGRAD_SLOW_MAX_INPUTS, check_id="double_backward")
    if (failed := _gradgradcheck(case, values, fast)) is not None:
        return failed
    power = jacobian_power(fast, inputs, "second-derivative", "H")
    detail = f"second derivatives match gradgradcheck ({mode_text(fast, case.spec.tolerance)}); {power}"
    data: dict[str, object] = {"fast_mode": fast}
    if fast:
        # One random projection over n elements sees a second-derivative error diluted to ~√(k/n):
        # at 10⁷ elements a backward that drops a whole second-order term passes. Such bugs do not
        # depend on the size, so the same Function at toy size gets every element (slow mode).
        small, note = _shrunk(case, deadline)
        if small is not None:
            at = small.point.label()
            try:
                failed = _gradgradcheck(small, float64_values(small), False, at=f"{at}; fast mode passed at full size")
            except Exception as error:  # e.g. a kernel with a minimum size: the full case stands
                note = f"not checked at {at} ({describe_exception(error)})"
            else:
                if failed is not None:
                    return failed
                detail += f"; and every element (slow mode) with the case shrunk to {at}"
                data["shrunk"] = dict(small.point.dims)
        if note:
            detail += f"; {note}"
    return Outcome.passed(detail, data=data)


def _shrunk_only(case: Case, deadline: float, passes: float, nominal: float) -> Outcome:
    """The budget plan gives less than gradgradcheck's fast mode on the full case costs: the whole
    check (the @once_differentiable probe too) on the case shrunk to a toy size, every element."""
    short = f"the full case's fast mode ({nominal:g}× forward+backward) did not fit the budget plan's {passes:.0f}×"
    small, note = _shrunk(case, deadline)
    if small is None:
        raise Skip(f"{short}, and {note or 'the spec names no dim to shrink'}; raise --budget")
    at = small.point.label()
    values = float64_values(small)
    if (refused := _probe(small)) is not None:
        return refused
    if (failed := _gradgradcheck(small, values, False, at=at)) is not None:
        return failed
    return Outcome.passed(
        f"second derivatives match gradgradcheck in slow mode (every element) with the case shrunk to {at}; "
        f"{short}: an error that shows only at full size is not covered",
        data={"fast_mode": False, "shrunk": dict(small.point.dims), "full_case": False},
    )


SHRUNK_BUDGET_SHARE = 0.05
"""Of what is left of the case's budget, what the toy-size slow run may take beyond the check's share."""
SHRUNK_SIZES = (4, 2, 1)
"""Sizes every named dim is cut to (the first whose inputs fit gradgradcheck's slow mode)."""


def _shrunk(case: Case, deadline: float) -> tuple[Case | None, str]:
    """The case with every named dim cut to a toy size where slow-mode gradgradcheck fits (and fits
    the check's share of the budget: a slow kernel is slow at any size), or None and why not."""
    dims = dict(case.point.dims)
    if not dims:
        return None, ""
    note = ""
    for size in SHRUNK_SIZES:  # the largest toy size that fits both the slow mode and the time
        shrunk = {name: min(value, size) for name, value in dims.items()}
        if shrunk == dims:
            break
        try:
            small = case.with_dims(shrunk)
            inputs = sum(small.values[i].numel() for i in small.diff_indices)
            if inputs > GRADGRAD_SLOW_MAX_INPUTS:
                continue
            outputs = sum(o.numel() for o in differentiable_outputs(small.float64_outputs()))
            need = small.cost_s() * slow_mode_passes(4 * inputs, 2 * outputs)
        except Exception as error:  # a Function that refuses the small size: the full case stands
            return None, f"not checked at a toy size ({describe_exception(error)})"
        # its share, or a sliver of what the case has left (the plan prices the full case only)
        if need <= max(deadline - time.monotonic(), SHRUNK_BUDGET_SHARE * case.remaining_s()):
            return small, ""
        note = f"slow mode at {small.point.label()} would need ~{need:.1f} s, over this check's share"
    return None, note


def _gradgradcheck(case: Case, values: list[object], fast: bool, at: str = "") -> Outcome | None:
    """The FAILED outcome of gradgradcheck on `values`, or None when it passes."""
    settings = mode_text(fast, case.spec.tolerance) + (f", at {at}" if at else "")
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
    return None


def _describe_mismatch(case: Case, output: int, position: int) -> str:
    names = case.diff_names
    of = f"∂loss/∂{names[output]}" if output < len(names) else f"first-order gradient {output}"
    if position < len(names):
        wrt = f"`{names[position]}`"
    else:
        wrt = "grad_output" if position - len(names) == 0 else f"grad_output {position - len(names)}"
    return f"the derivative of {of} w.r.t. {wrt}"


CHECK = Check.of("double_backward", check_double_backward)

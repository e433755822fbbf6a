"""`aliased_args`: the same tensor passed for two arguments gives the sum of the separate gradients.

`f(x, x)` must behave as `f(x, x.clone())`: the same outputs, and a gradient for x equal to the sum
of the two arguments' gradients (∂₁f + ∂₂f). A Function that writes into one argument's memory and
reads the other (an in-place scale undone afterwards, a buffer reused) breaks this, as does
torch.compile in pytorch #183604 (half the gradient; this check runs eager only).
"""

from __future__ import annotations

import itertools

import torch

from lossctl.case import Case
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import require_differentiable_inputs, same_random_state, sqrt_eps, worst_rel_error
from lossctl.loader import describe_exception
from lossctl.report import Outcome

MAX_PAIRS = 3
HINT = (
    "forward or backward assumes its arguments do not share memory: a write into one (in place, through "
    ".data or a raw pointer, even if undone later) changes the other. Work on copies"
)


def _pairs(case: Case) -> list[tuple[int, int]]:
    """Pairs of differentiable arguments with one shape and dtype."""
    values = case.values
    return [
        (i, j)
        for i, j in itertools.combinations(case.diff_indices, 2)
        if values[i].shape == values[j].shape and values[i].dtype == values[j].dtype
    ][:MAX_PAIRS]


def check_aliased_args(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    pairs = _pairs(case)
    if not pairs:
        raise Skip("no two arguments that require grad share a shape and dtype")
    checked: list[str] = []
    worst = 0.0
    for i, j in pairs:
        # Both get the values of one of them; the other's may lie outside the first's domain
        # (a log of a difference, a check that weights are positive): then try the other's.
        for source in (i, j):
            result = _check_pair(case, i, j, source)
            if result is not None:
                break
        if isinstance(result, Outcome):
            return result
        if result is not None:
            worst = max(worst, result)
            checked.append(f"{case.names[i]}={case.names[j]}")
    if not checked:
        raise Skip(
            "with equal values for the paired arguments forward raises or the results are not finite: nothing to "
            "compare"
        )
    return Outcome.passed(
        f"one tensor for {', '.join(checked)}: same outputs, gradient = the sum of the two (max rel err {worst:.1e})",
        data={"pairs": checked, "max_rel_err": worst},
    )


def _check_pair(case: Case, i: int, j: int, source: int) -> Outcome | float | None:
    """f(x, x) against f(x, x.clone()), x the values of argument `source`: a failure, the worst
    relative error, or None when the Function raises or gives non-finite results at equal values
    (nothing to compare)."""
    a, b = case.names[i], case.names[j]
    slot = {k: n for n, k in enumerate(case.diff_indices)}
    tol = sqrt_eps(case.working_dtype)
    separate = case.fresh()
    separate[i] = separate[source].detach().clone().requires_grad_()
    separate[j] = separate[source].detach().clone().requires_grad_()
    cotangents: list[torch.Tensor] = []

    def draw(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        cotangents[:] = case.random_cotangents(outputs, "aliased_args")
        return cotangents

    try:
        with same_random_state(case, "aliased_args"):
            want_out, want_grads = case.vjp(separate, draw)
    except Exception:
        return None  # equal values are outside its domain: no aliasing question to ask
    if not all(bool(torch.isfinite(t).all()) for t in [*want_out, *want_grads] if t is not None):
        return None  # say, the log of their difference
    aliased = case.fresh()
    aliased[j] = aliased[i] = separate[i].detach().clone().requires_grad_()
    try:
        with same_random_state(case, "aliased_args"):
            got_out, got_grads = case.vjp(aliased, cotangents)
    except Exception as error:
        return Outcome.failed(
            f"the same tensor for `{a}` and `{b}` raises {describe_exception(error)}",
            hint=HINT,
            data={"arguments": [a, b]},
        )
    err_out, where = worst_rel_error(got_out, want_out, [f"output {k}" for k in range(len(want_out))])
    if err_out > tol:
        return Outcome.failed(
            f"the same tensor for `{a}` and `{b}` changes {where} (rel err {err_out:.3g} against two equal copies)",
            hint=HINT,
            data={"arguments": [a, b], "rel_err": err_out},
        )
    total = _sum(want_grads[slot[i]], want_grads[slot[j]])
    err, _ = worst_rel_error([got_grads[slot[i]]], [total], [a])
    if err > tol:
        return Outcome.failed(
            f"the same tensor for `{a}` and `{b}` gets a gradient ≠ ∂{a} + ∂{b} of two equal copies "
            f"(rel err {err:.3g})",
            hint=HINT,
            data={"arguments": [a, b], "rel_err": err},
        )
    return max(err_out, err)


def _sum(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


CHECK = Check.of("aliased_args", check_aliased_args)

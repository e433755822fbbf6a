"""`compile_agreement` (opt-in): eager, torch.compile and torch.func give the same gradients.

Three ways to differentiate one Function: eager autograd, `torch.compile` (dynamo + AOTAutograd,
the "aot_eager" backend, so no C compiler is needed) and `torch.func.vjp` (functorch transforms,
which run forward on unwrapped tensors and need `setup_context`). They disagree when forward
branches on state the transforms change (`x.requires_grad`, `torch.is_grad_enabled()`, a Python
attribute), or in PyTorch bugs (pytorch #193279). Off by default: compiling costs about a second
per case on CPU, against milliseconds for the rest of the battery.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from lossctl.case import Case
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import require_differentiable_inputs, same_random_state, sqrt_eps, worst_rel_error
from lossctl.loader import describe_exception
from lossctl.report import Outcome

BACKEND = "aot_eager"
NEEDS_SETUP_CONTEXT = "setup_context"
"""Words of torch's error for a Function without setup_context under a functorch transform."""
HINT = (
    "forward must compute the same thing however it is called: do not branch on x.requires_grad or "
    "torch.is_grad_enabled() (under torch.func, forward and setup_context see tensors that do not require "
    "grad), nor on Python state that compiled code captures once"
)


def check_compile_agreement(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    if case.forward_is_random():
        raise Skip("forward draws random numbers, which compiled and transformed code draw differently")
    values = case.fresh()
    drawn: list[torch.Tensor] = []

    def draw(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        drawn[:] = case.random_cotangents(outputs, "compile_agreement")
        return drawn

    with same_random_state(case, "compile_agreement"):
        eager_out, eager_grads = case.vjp(values, draw)
    positions = case.output_positions(case.call(case.fresh()))
    labels = [f"output {p}" for p in positions]
    tol = sqrt_eps(case.working_dtype)
    legs: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for leg, run in (("torch.compile", _compiled), ("torch.func.vjp", _functorch)):
        try:
            with same_random_state(case, "compile_agreement"):
                outs, grads = run(case, positions, drawn)
        except Skip as skip:
            skipped[leg] = str(skip)
            continue
        except Exception as error:
            return Outcome.failed(f"{leg} raises {describe_exception(error)} where eager runs", hint=HINT)
        err_out, where = worst_rel_error(outs, eager_out, labels)
        if err_out > tol:
            return Outcome.failed(f"{leg} gives another {where} than eager (rel err {err_out:.3g})", hint=HINT)
        err, name = worst_rel_error(grads, eager_grads, case.diff_names)
        if err > tol:
            missing = any(g is None or not bool(g.ne(0).any()) for g in grads) and err >= 1.0
            what = "no (or a zero) gradient" if missing else f"another gradient (rel err {err:.3g})"
            return Outcome.failed(f"{leg} gives {what} for `{name}` than eager", hint=HINT, data={"rel_err": err})
        legs[leg] = max(err_out, err)
    if not legs:
        raise Skip("; ".join(f"{leg}: {why}" for leg, why in skipped.items()))
    agree = ", ".join(f"{leg} (rel err {err:.1e})" for leg, err in legs.items())
    skipped_text = "".join(f"; {leg} skipped: {why}" for leg, why in skipped.items())
    return Outcome.passed(f"eager = {agree}{skipped_text}", data={"rel_err": legs, "skipped": skipped})


def _differentiable_forward(case: Case, positions: list[int]) -> tuple[list[Any], Callable[..., tuple[Any, ...]]]:
    """Fresh inputs, and forward as a function of the differentiable ones returning the
    differentiable outputs: what torch.compile and torch.func.vjp take. It calls the target
    directly, with keyword tensors prepared outside, because Case.call's copying (requires_grad_)
    is refused inside a functorch transform."""
    values = case.fresh()
    function = case.function()
    kwargs = {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in case.kwargs.items()}

    def forward(*diff: torch.Tensor) -> tuple[Any, ...]:
        outs = function(*case.substitute(values, diff), **kwargs)
        outs = tuple(outs) if isinstance(outs, tuple | list) else (outs,)
        return tuple(outs[p] for p in positions)

    return values, forward


def _compiled(
    case: Case, positions: list[int], cotangents: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    values, forward = _differentiable_forward(case, positions)
    torch.compiler.reset()
    try:
        # Dynamo warns about what it traces (lossctl's own seeding, builtins it does not know);
        # those are notes on tracing, not on the Function.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            leaves = [values[i] for i in case.diff_indices]
            outs = list(torch.compile(forward, backend=BACKEND)(*leaves))
            grads = torch.autograd.grad(outs, leaves, cotangents, allow_unused=True)
    finally:
        torch.compiler.reset()
    return [o.detach() for o in outs], list(grads)


def _functorch(
    case: Case, positions: list[int], cotangents: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    values, forward = _differentiable_forward(case, positions)
    primals = [values[i].detach() for i in case.diff_indices]
    try:
        outs, pullback = torch.func.vjp(forward, *primals)
    except RuntimeError as error:
        if NEEDS_SETUP_CONTEXT in str(error):
            raise Skip("the Function has no setup_context, which torch.func needs") from None
        raise
    return list(outs), list(pullback(tuple(cotangents)))


CHECK = Check.of("compile_agreement", check_compile_agreement)

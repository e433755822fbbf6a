"""`determinism`: two runs on identical inputs agree, whatever the random state at backward time."""

from __future__ import annotations

import torch

from lossctl.atomics import atomics_outcome
from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check
from lossctl.checks.common import require_differentiable_inputs
from lossctl.device import seed_device
from lossctl.inputs import derive_seed
from lossctl.report import Outcome


def _max_diff(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if (x is None) != (y is None):
                return float("inf")
            continue
        if torch.equal(x, y):
            continue
        diff = (x.double() - y.double()).abs()
        both_nan = torch.isnan(x.double()) & torch.isnan(y.double())
        diff = torch.where(both_nan, torch.zeros_like(diff), diff)
        worst = max(worst, float(torch.nan_to_num(diff, nan=float("inf")).max()))
    return worst


def check_determinism(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    seed = derive_seed(case.seed, "determinism")

    def run(reseed_before_backward: int | None) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
        seed_device(case.device, seed)
        values = case.fresh()
        outputs = case.call(values)
        cotangents = case.random_cotangents(differentiable_outputs(outputs), "determinism")
        if reseed_before_backward is not None:
            seed_device(case.device, reseed_before_backward)
        grads = case.backward(outputs, values, cotangents)
        tensors = [o.detach() for o in outputs if isinstance(o, torch.Tensor)]
        return tensors, list(grads)

    out_a, grad_a = run(None)
    out_b, grad_b = run(seed + 1)  # same forward, different random state at backward time
    tol = case.spec.tolerance.nondet_tol
    out_diff = _max_diff(out_a, out_b)
    grad_diff = _max_diff(grad_a, grad_b)
    data = {"output_max_diff": out_diff, "grad_max_diff": grad_diff, "nondet_tol": tol}
    mode = "bitwise" if tol == 0 else f"within nondet_tol {tol:g}"
    if out_diff > tol:
        return Outcome.failed(
            f"forward gives different outputs for identical inputs and seed (max diff {out_diff:.3g})",
            hint="a nondeterministic kernel (atomics, uninitialised memory)? If expected, set tolerance.nondet_tol",
            data=data,
        )
    if grad_diff > tol:
        _, grad_c = run(None)
        if _max_diff(grad_a, grad_c) <= tol:
            return Outcome.failed(
                f"gradients change with the random state at backward time (max diff {grad_diff:.3g})",
                hint="backward draws random numbers: it recomputes randomness from forward (a dropout "
                "mask, noise) instead of saving it with ctx.save_for_backward",
                data=data,
            )
        if case.device.type == "cuda":  # atomics sum in a varying order there: say so, not "wrong"
            found = atomics_outcome(case.device, lambda: run(None)[1], grad_a, grad_b, grad_diff, data, _max_diff)
            if found is not None:
                return found
        return Outcome.failed(
            f"two backward passes on identical inputs differ (max diff {grad_diff:.3g}, {mode})",
            hint="a nondeterministic backward (atomics, scatter_add, uninitialised memory with torch.empty)? "
            "If expected, set tolerance.nondet_tol",
            data=data,
        )
    power = "any bitwise difference" if tol == 0 else f"a difference > {tol:g}"
    return Outcome.passed(
        f"outputs and gradients repeat {mode}, also with another RNG state at backward; detects {power}", data=data
    )


CHECK = Check.of("determinism", check_determinism)

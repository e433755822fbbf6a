"""`linearity`: backward is linear in grad_output, as every vector-Jacobian product must be."""

from __future__ import annotations

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import (
    dtype_name,
    in_backward,
    require_differentiable_inputs,
    sqrt_eps,
    worst_rel_error,
)
from lossctl.report import Outcome

SCALES = (1e-3, -0.37, 7.5, 1e3)
"""Factors a for vjp(a·v) = a·vjp(v): tiny, negative, moderate and large, so that clipping,
normalizing or sign-dependent handling of grad_output shows up."""

HINT = (
    "backward clips, normalizes, ignores or special-cases grad_output: it must return "
    "grad_output times the local derivative (it breaks scaled, weighted or summed losses)"
)


def check_linearity(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    # float64 when the Function runs in it (then rounding cannot hide a small nonlinearity).
    dtype = torch.float64 if case.runs_in_float64() else None
    probe = differentiable_outputs(case.float64_outputs() if dtype else case.forward())
    if not probe:
        raise Skip("no output requires grad (see backward)")
    work_dtype = probe[0].dtype
    tol = sqrt_eps(work_dtype)
    v = case.random_cotangents(probe, "linearity-v")
    u = case.random_cotangents(probe, "linearity-u")
    names = case.diff_names

    def vjp(cotangents: list[torch.Tensor]) -> list[torch.Tensor | None]:
        return case.vjp(case.fresh(dtype), cotangents, dtype)[1]

    def scaled(tensors: list[torch.Tensor | None], a: float) -> list[torch.Tensor | None]:
        return [None if t is None else a * t for t in tensors]

    base = vjp(v)
    worst = 0.0
    for a in SCALES:
        err, name = worst_rel_error(vjp([a * t for t in v]), scaled(base, a), names)
        worst = max(worst, err)
        if err > tol:
            return Outcome.failed(
                f"not homogeneous: vjp({a:g}·v) ≠ {a:g}·vjp(v) for `{name}` (rel err {err:.3g} > {tol:.1e})",
                hint=in_backward(case, HINT),
                data={"rel_err": err, "scale": a, "argument": name},
            )
    for su, sv in ((1.0, 1.0), (10.0, 0.1)):
        uu, vv = [su * t for t in u], [sv * t for t in v]
        summed = [
            None if a is None and b is None else (0 if a is None else a) + (0 if b is None else b)
            for a, b in zip(vjp(uu), vjp(vv), strict=True)
        ]
        err, name = worst_rel_error(vjp([x + y for x, y in zip(uu, vv, strict=True)]), summed, names)
        worst = max(worst, err)
        if err > tol:
            return Outcome.failed(
                f"not additive: vjp(u+v) ≠ vjp(u)+vjp(v) for `{name}` (rel err {err:.3g} > {tol:.1e})",
                hint=in_backward(case, HINT),
                data={"rel_err": err, "argument": name},
            )
    return Outcome.passed(
        f"homogeneous and additive in grad_output, max rel err {worst:.1e} ({dtype_name(work_dtype)}); "
        f"detects a non-linearity ≥ {tol:.1e} of the gradient's norm",
        data={"max_rel_err": worst, "tolerance": tol, "scales": list(SCALES)},
    )


CHECK = Check.of("linearity", check_linearity)

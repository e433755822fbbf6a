"""`linearity`: backward is linear in grad_output, as every vector-Jacobian product must be."""

from __future__ import annotations

import math

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.backward import require_differentiable_inputs
from lossctl.checks.base import Check, Skip
from lossctl.report import Outcome

SCALES = (1e-3, -0.37, 7.5, 1e3)
"""Factors a for vjp(a·v) = a·vjp(v): tiny, negative, moderate and large, so that clipping,
normalizing or sign-dependent handling of grad_output shows up."""


def tolerance(dtype: torch.dtype) -> float:
    """√ε of the dtype: far above rounding in a linear backward, far below any nonlinearity."""
    return math.sqrt(torch.finfo(dtype).eps)


def relative_error(lhs: list[torch.Tensor], rhs: list[torch.Tensor]) -> tuple[float, int]:
    """The largest ‖lhs − rhs‖ / ‖rhs‖ over arguments, and which argument it is."""
    worst, where = 0.0, 0
    for k, (a, b) in enumerate(zip(lhs, rhs, strict=True)):
        a, b = a.double(), b.double()
        scale = max(float(b.norm()), float(a.norm()))
        if scale == 0.0:
            continue
        err = float((a - b).norm()) / scale
        if not math.isfinite(err):
            err = math.inf
        if err > worst:
            worst, where = err, k
    return worst, where


def check_linearity(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    # float64 when the Function runs in it (then rounding cannot hide a small nonlinearity).
    dtype: torch.dtype | None = torch.float64
    try:
        probe = differentiable_outputs(case.call(case.fresh(dtype), dtype))
    except Exception:
        dtype = None
        probe = differentiable_outputs(case.call(case.fresh()))
    if not probe:
        raise Skip("no output requires grad (see backward)")
    work_dtype = probe[0].dtype
    tol = tolerance(work_dtype)
    v = case.random_cotangents(probe, "linearity-v")
    u = case.random_cotangents(probe, "linearity-u")

    def vjp(cotangents: list[torch.Tensor]) -> list[torch.Tensor]:
        _, grads = case.vjp(case.fresh(dtype), cotangents, dtype)
        return [
            torch.zeros_like(case.values[i], dtype=work_dtype) if g is None else g
            for i, g in zip(case.diff_indices, grads, strict=True)
        ]

    base = vjp(v)
    worst = 0.0
    for a in SCALES:
        err, k = relative_error(vjp([a * t for t in v]), [a * g for g in base])
        worst = max(worst, err)
        if err > tol:
            return _failed(
                case,
                f"not homogeneous: vjp({a:g}·v) ≠ {a:g}·vjp(v) for `{case.diff_names[k]}` "
                f"(rel err {err:.3g} > {tol:.1e})",
                err,
            )
    for su, sv in ((1.0, 1.0), (10.0, 0.1)):
        uu, vv = [su * t for t in u], [sv * t for t in v]
        err, k = relative_error(
            vjp([x + y for x, y in zip(uu, vv, strict=True)]),
            [x + y for x, y in zip(vjp(uu), vjp(vv), strict=True)],
        )
        worst = max(worst, err)
        if err > tol:
            return _failed(
                case,
                f"not additive: vjp(u+v) ≠ vjp(u)+vjp(v) for `{case.diff_names[k]}` "
                f"(rel err {err:.3g} > {tol:.1e})",
                err,
            )
    return Outcome.passed(
        f"homogeneous and additive in grad_output, max rel err {worst:.1e} "
        f"({str(work_dtype).removeprefix('torch.')})",
        data={"max_rel_err": worst, "tolerance": tol, "scales": list(SCALES)},
    )


def _failed(case: Case, detail: str, err: float) -> Outcome:
    return Outcome.failed(
        detail,
        hint="backward clips, normalizes, ignores or special-cases grad_output: it must return "
        "grad_output times the local derivative (it breaks scaled, weighted or summed losses)",
        data={"rel_err": err},
    )


CHECK = Check(
    "linearity",
    "backward is linear in grad_output (scaled and summed upstream gradients)",
    check_linearity,
)

"""`low_precision`: forward and backward in float32 / bfloat16 / float16 agree with float64.

The rule (README 'low_precision'): inputs are rounded to the low dtype; the reference is the same
Function run in float64 on those rounded inputs (so only the Function's own arithmetic is judged,
not the rounding of its inputs). Each output and gradient must be finite, and its error relative to
the reference's norm, ‖y_low − y_ref‖ / ‖y_ref‖, at most `factor` (default 32) times the larger of:
one unit of roundoff u = ε/2; what rounding the reference itself to the dtype loses (more where
values are subnormal); and the problem's conditioning — how far the float64 result moves when the
inputs move by ±u (large where a sum cancels, which no implementation can avoid). A correct
Function loses a few u in its chain of ops; overflow and an unstable algorithm (E[x²] − E[x]²)
cost hundreds to millions.

A Function that refuses float64 (a float32/bfloat16-only kernel) is compared, in float16 and
bfloat16, with its own float32 run under the same floor: the float32 reference's own error (a few
float32 u) is ~10⁴× below the lower dtypes' u. That judges its low-precision arithmetic, not its
gradient's value (data["gradient_verified"] is False). The dtypes are tried in priority order as the
case's budget plan allows (one at its minimum).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.catalogue import FACTOR
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import (
    LOW_PRECISION_DTYPES,
    dtype_name,
    rel_error,
    require_differentiable_inputs,
    rounded_leaves,
    unit_roundoff,
)
from lossctl.inputs import derive_seed, torch_dtype
from lossctl.loader import describe_exception
from lossctl.report import Outcome

DEFAULT_FACTOR = 32.0


def check_low_precision(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    if case.forward_is_random():
        raise Skip("forward draws random numbers, and another dtype draws other random numbers")
    names = list(case.spec.dtypes or LOW_PRECISION_DTYPES)
    factor = float(case.spec.check_options.get("low_precision", {}).get(FACTOR, DEFAULT_FACTOR))
    reference, against = torch.float64, "float64"
    if (why := case.float64_error()) is not None:
        # A float32/bfloat16-only kernel: its own float32 run is the reference, whose rounding
        # (a few float32 u) is far below the lower dtypes' floors.
        reference, against = torch.float32, f"its own float32 run ({why.split(' (')[0]})"
        lower = [n for n in names if torch_dtype(n) not in (torch.float32, torch.float64)]
        if not lower:
            raise Skip(f"needs a reference wider than {', '.join(names)}, and the Function {why}")
        names = lower
    names, left_out = fit_dtypes(case, names)
    parts, skipped, data = [], [], {}
    for name in names:
        dtype = torch_dtype(name)
        result = _compare(case, dtype, factor, reference)
        if isinstance(result, str):  # unsupported on this device
            skipped.append(f"{name}: {result}")
            continue
        failure, summary, numbers = result
        data[name] = numbers
        if failure is not None:
            return Outcome.failed(f"{name}: {failure} (against {against})", hint=_hint(failure), data=data)
        parts.append(f"{name} {summary}")
    if left_out:
        skipped.append(left_out)
    if not parts:
        raise Skip("; ".join(skipped))
    data["reference"] = dtype_name(reference)
    if reference != torch.float64:
        data["gradient_verified"] = False  # agreement across dtypes, not a gradient value checked
    note = f"; skipped {'; '.join(skipped)}" if skipped else ""
    return Outcome.passed(
        f"{', '.join(parts)} against {against}; detects an error > {factor:g}× each dtype's rounding and "
        f"conditioning floor{note}",
        data=data,
    )


def fit_dtypes(case: Case, names: list[str]) -> tuple[list[str], str | None]:
    """The dtypes, in priority order (the spec's, else REDUCED_PRIORITY), that fit the check's share
    of the budget plan, and a note on those left out (None: all fit). Its catalogue price is for
    LOW_PRECISION_DTYPES."""
    allotment = case.allotment("low_precision")
    if allotment is None or not allotment.reduced or len(names) <= 1:
        return names, None
    per_dtype = allotment.nominal / len(LOW_PRECISION_DTYPES)
    fit = max(1, int(allotment.passes / per_dtype))
    if fit >= len(names):
        return names, None
    if not case.spec.dtypes:  # ours, not the user's order: the dtypes where bugs show first
        names = sorted(names, key=lambda n: REDUCED_PRIORITY.index(n) if n in REDUCED_PRIORITY else len(names))
    return names[:fit], (
        f"{', '.join(names[fit:])}: the budget plan gives this check {allotment.passes:.0f}× forward+backward "
        f"and one dtype costs ~{per_dtype:.0f}× (raise --budget)"
    )


REDUCED_PRIORITY = ("float16", "bfloat16", "float32")
"""Which default dtypes a reduced plan keeps first: float16 overflows where float32 never does, and
bfloat16 has the fewest mantissa bits; float32 rarely shows what they do not."""

CONDITIONING_DRAWS = 2
"""Random input perturbations of one unit of roundoff used to estimate the problem's conditioning."""


def _run_reference(
    case: Case, values: list[Any], cotangents: list[torch.Tensor], reference: torch.dtype
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Forward and backward in the reference dtype (float64, or float32 for a kernel refusing it)."""
    return case.vjp(rounded_leaves(values, reference), cotangents, reference)


def _perturbed(values: list[Any], u: float, gen: torch.Generator, reference: torch.dtype) -> list[Any]:
    """Every floating input times (1 ± u), signs at random: what merely storing it in the dtype costs."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            signs = torch.randint(0, 2, v.shape, generator=gen, dtype=reference).mul_(2).sub_(1).to(v.device)
            out.append((v.detach().to(reference) * (1 + u * signs)).requires_grad_(v.requires_grad))
        else:
            out.append(v)
    return out


def _compare(
    case: Case, dtype: torch.dtype, factor: float, reference: torch.dtype = torch.float64
) -> str | tuple[str | None, str, dict[str, float]]:
    u = unit_roundoff(dtype)
    rounded = case.in_dtype(dtype)
    # Cotangents representable in the dtype, so both runs see the same ones.
    outputs = case.float64_outputs() if reference == torch.float64 else case.forward(reference)
    shapes = differentiable_outputs(outputs)
    cotangents = [c.to(dtype) for c in case.random_cotangents(shapes, "low_precision")]
    cotangents64 = [c.to(reference) for c in cotangents]
    ref_diff, ref_grads = _run_reference(case, rounded, cotangents64, reference)
    try:
        low_diff, grads = case.vjp(case.in_dtype(dtype), cotangents, dtype)
    except Exception as error:
        if "not implemented for" in str(error) or "not supported" in str(error).lower():
            return f"unsupported on {case.device.type} ({describe_exception(error)})"
        # A kernel built for some dtypes only refuses the others, in whatever way it was written
        # (`assert x.dtype == torch.float32` is common): as the float64 probe, any exception.
        if reference != torch.float64:
            return f"the Function refuses it ({describe_exception(error)})"
        raise
    labels = [f"output {k}" if len(ref_diff) > 1 else "out" for k in range(len(ref_diff))]
    labels += [f"∂{n}" for n in case.diff_names]
    wants = [*ref_diff, *ref_grads]
    gots = [*low_diff, *grads]
    # How much the exact result moves when the inputs move by one unit of roundoff: the error any
    # implementation in this dtype can have (large where a sum cancels).
    gen = torch.Generator().manual_seed(derive_seed(case.seed, "low_precision", dtype_name(dtype)))
    conditioning = [0.0] * len(wants)
    for _ in range(CONDITIONING_DRAWS):
        moved_out, moved_grads = _run_reference(case, _perturbed(rounded, u, gen, reference), cotangents64, reference)
        for k, (moved, want) in enumerate(zip([*moved_out, *moved_grads], wants, strict=True)):
            if moved is not None and want is not None:
                conditioning[k] = max(conditioning[k], rel_error(moved, want))
    numbers: dict[str, float] = {}
    for label, got, want, cond in zip(labels, gots, wants, conditioning, strict=True):
        if got is None or want is None:
            continue
        if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(want).all()):
            peak = float(want.detach().abs().max())
            limit = torch.finfo(dtype).max
            why = (
                f" ({dtype_name(reference)} reaches {peak:.3g}; {dtype_name(dtype)} max {limit:.3g})"
                if peak > limit / 4
                else ""
            )
            return f"{label} is not finite{why} — overflow", "", numbers
        err = rel_error(got, want)
        # The floor: one unit of roundoff, or what rounding the exact result to the dtype loses
        # (more where values are subnormal), or what the problem's conditioning costs.
        floor = max(u, rel_error(want.to(dtype), want), cond)
        numbers[label] = err / u
        if err > factor * floor:
            ulps = "inf" if math.isinf(err) else f"{err / u:.0f}"
            return (
                f"{label} rel err {err:.2g} = {ulps} u > {factor:g} × {floor / u:.1f} u (rounding and "
                "conditioning alone) — loses precision",
                "",
                numbers,
            )
    summary = " ".join(f"{k} {v:.1f}u" for k, v in numbers.items())
    return None, summary, numbers


def _hint(failure: str) -> str:
    if "overflow" in failure:
        return "compute in a wider dtype (x.float()) or use a stable form (logsumexp, log_softmax, a scaled sum)"
    return "catastrophic cancellation or a reduction in low precision: accumulate in float32, or use a stable form"


CHECK = Check.of("low_precision", check_low_precision)

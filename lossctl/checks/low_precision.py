"""`low_precision`: forward and backward in float32 / bfloat16 / float16 agree with float64.

The rule (README 'low_precision'): inputs are rounded to the low dtype; the reference is the same
Function run in float64 on those rounded inputs (so only the Function's own arithmetic is judged,
not the rounding of its inputs). Each output and gradient must be finite, and its error relative to
the reference's norm, ‖y_low − y_ref‖ / ‖y_ref‖, at most `factor` (default 32) times what rounding
the reference itself to the dtype loses — at least one unit of roundoff u = ε/2, more where values
are subnormal in that dtype. A correct Function loses a few u in its chain of ops; overflow and
catastrophic cancellation cost hundreds to millions.
"""

from __future__ import annotations

import math

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, rel_error, require_differentiable_inputs, runs_in_float64
from lossctl.inputs import torch_dtype
from lossctl.loader import describe_exception
from lossctl.report import Outcome

DEFAULT_FACTOR = 32.0


def default_dtypes(device: torch.device) -> tuple[str, ...]:
    return ("float32",) if device.type == "cpu" else ("float32", "bfloat16")


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def check_low_precision(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    names = case.spec.dtypes or default_dtypes(case.device)
    factor = float(case.spec.check_options.get("low_precision", {}).get("factor", DEFAULT_FACTOR))
    if not runs_in_float64(case):
        raise Skip("needs a float64 reference run, and the Function cannot run in float64")
    parts, skipped, data = [], [], {}
    for name in names:
        dtype = torch_dtype(name)
        result = _compare(case, dtype, factor)
        if isinstance(result, str):  # unsupported on this device
            skipped.append(f"{name}: {result}")
            continue
        failure, summary, numbers = result
        data[name] = numbers
        if failure is not None:
            return Outcome.failed(f"{name}: {failure}", hint=_hint(failure), data=data)
        parts.append(f"{name} {summary}")
    if not parts:
        raise Skip("; ".join(skipped))
    note = f"; skipped {'; '.join(skipped)}" if skipped else ""
    return Outcome.passed(f"{', '.join(parts)} (allowed {factor:g}× rounding){note}", data=data)


def _compare(case: Case, dtype: torch.dtype, factor: float) -> str | tuple[str | None, str, dict[str, float]]:
    f64 = torch.float64
    rounded = [
        v.detach().to(dtype).requires_grad_(v.requires_grad)
        if isinstance(v, torch.Tensor) and v.is_floating_point()
        else v
        for v in case.values
    ]
    reference = [
        v.detach().to(f64).requires_grad_(v.requires_grad)
        if isinstance(v, torch.Tensor) and v.is_floating_point()
        else v
        for v in rounded
    ]
    ref_outputs = case.call(reference, f64)
    ref_diff = differentiable_outputs(ref_outputs)
    cotangents = [c.to(dtype) for c in case.random_cotangents(ref_diff, "low_precision")]
    ref_grads = torch.autograd.grad(
        ref_diff, [reference[i] for i in case.diff_indices], [c.to(f64) for c in cotangents], allow_unused=True
    )
    low = [v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v for v in rounded]
    try:
        outputs = case.call(low, dtype)
        low_diff = differentiable_outputs(outputs)
        grads = torch.autograd.grad(low_diff, [low[i] for i in case.diff_indices], cotangents, allow_unused=True)
    except (RuntimeError, NotImplementedError, TypeError) as error:
        if "not implemented for" in str(error) or "not supported" in str(error).lower():
            return f"unsupported on {case.device.type} ({describe_exception(error)})"
        raise
    u = unit_roundoff(dtype)
    pairs = [
        (f"output {k}" if len(ref_diff) > 1 else "out", a, b)
        for k, (a, b) in enumerate(zip(low_diff, ref_diff, strict=True))
    ]
    pairs += [
        (f"∂{n}", a, b)
        for n, a, b in zip(case.diff_names, grads, ref_grads, strict=True)
        if a is not None and b is not None
    ]
    numbers: dict[str, float] = {}
    for label, got, want in pairs:
        if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(want).all()):
            peak = float(want.detach().abs().max())
            limit = torch.finfo(dtype).max
            why = f" (float64 reaches {peak:.3g}; {dtype_name(dtype)} max {limit:.3g})" if peak > limit / 4 else ""
            return f"{label} is not finite{why} — overflow", "", numbers
        err = rel_error(got, want)
        # What rounding the exact result to the dtype loses by itself (more than u where values
        # fall into the subnormal range, as tiny gradients of a mean over many elements do).
        floor = max(u, rel_error(want.to(dtype), want))
        numbers[label] = err / u
        if err > factor * floor:
            ulps = "inf" if math.isinf(err) else f"{err / u:.0f}"
            return (
                f"{label} rel err {err:.2g} = {ulps} u > {factor:g} × {floor / u:.1f} u (rounding alone) "
                "— loses precision",
                "",
                numbers,
            )
    summary = " ".join(f"{k} {v:.1f}u" for k, v in numbers.items())
    return None, summary, numbers


def _hint(failure: str) -> str:
    if "overflow" in failure:
        return "compute in a wider dtype (x.float()) or use a stable form (logsumexp, log_softmax, a scaled sum)"
    return "catastrophic cancellation or a reduction in low precision: accumulate in float32, or use a stable form"


CHECK = Check(
    "low_precision",
    "forward/backward in float32 (and bfloat16 on CUDA) agree with float64 within a dtype-scaled error",
    check_low_precision,
)

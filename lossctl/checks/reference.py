"""`reference`: the Function against a plain implementation, in the dtypes you train in.

The rule (README 'reference'), as kernel libraries test fused kernels: a float64 "truth" is the
reference run in float64 on the inputs rounded to the dtype; the Function's error against that
truth must be at most `factor` (default 2) times the error of the reference itself run in the same
low dtype, plus a floor of `floor` (default 2) units of roundoff of the dtype:

    ‖f_low − truth‖ / ‖truth‖  ≤  factor · ‖ref_low − truth‖ / ‖truth‖  +  floor · u

for every differentiable output and every gradient (with a seeded random grad_output, never all
ones). Works where gradcheck cannot run (bfloat16 kernels).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.catalogue import FACTOR, FLOOR
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import (
    default_dtypes,
    dtype_name,
    rel_error,
    require_differentiable_inputs,
    rounded_leaves,
    unit_roundoff,
)
from lossctl.inputs import torch_dtype
from lossctl.loader import describe_exception, load_object
from lossctl.report import Outcome

DEFAULT_FACTOR = 2.0
DEFAULT_FLOOR = 2.0
_UNSUPPORTED = ("not implemented for", "not supported", "unsupported")


def load_reference(case: Case) -> Callable[..., Any]:
    """The reference as a function of the Function's positional inputs: arguments go by name
    where the reference has a parameter of that name (so `reduction` lands in `reduction`), the
    rest by position, plus `reference_kwargs`."""
    obj, _ = load_object(case.spec.reference or "", base_dir=case.spec.base_dir)
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        obj = obj().to(case.device)
    if not callable(obj):
        raise TypeError(f"reference `{case.spec.reference}` is a {type(obj).__name__}, not callable")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    by_name = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    names = case.names
    extra = dict(case.spec.reference_kwargs)  # wins over a Function argument of the same name

    def call(*values: Any) -> Any:
        pairs = [(n, v) for n, v in zip(names, values, strict=True) if n not in extra]
        positional = [v for n, v in pairs if n not in by_name]
        keyword = {n: v for n, v in pairs if n in by_name}
        return obj(*positional, **keyword, **extra)

    return call


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return tuple(result) if isinstance(result, tuple | list) else (result,)


_leaves = rounded_leaves


def _run(
    fn: Any, values: list[Any], indices: tuple[int, ...], cotangents: list[torch.Tensor] | None
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    outputs = differentiable_outputs(_as_tuple(fn(*values)))
    if cotangents is None:
        return outputs, [], []
    grads = torch.autograd.grad(outputs, [values[i] for i in indices], cotangents, allow_unused=True)
    return outputs, list(grads), cotangents


def check_reference(case: Case) -> Outcome:
    if not case.spec.reference:
        raise Skip("no `reference:` in the spec")
    require_differentiable_inputs(case)
    if case.forward_is_random():
        raise Skip("forward draws random numbers, and the reference draws other random numbers")
    reference = load_reference(case)
    options = case.spec.check_options.get("reference", {})
    factor = float(options.get(FACTOR, DEFAULT_FACTOR))
    floor_u = float(options.get(FLOOR, DEFAULT_FLOOR))
    names = case.spec.dtypes or default_dtypes(case.device)
    parts, skipped, data = [], [], {}
    for name in names:
        dtype = torch_dtype(name)
        result = _compare(case, reference, dtype, factor, floor_u)
        if isinstance(result, str):
            skipped.append(f"{name}: {result}")
            continue
        failure, summary, numbers = result
        data[name] = numbers
        if failure:
            return Outcome.failed(
                f"{name}: {failure}",
                hint="the Function's error against float64 is more than "
                f"{factor:g}× the plain reference's own error in {name}",
                data=data,
            )
        parts.append(f"{name} {summary}")
    if not parts:
        raise Skip("; ".join(skipped))
    note = f"; skipped {'; '.join(skipped)}" if skipped else ""
    return Outcome.passed(f"{', '.join(parts)} (≤ {factor:g}× ref + {floor_u:g}u){note}", data=data)


def _compare(
    case: Case, reference: Any, dtype: torch.dtype, factor: float, floor_u: float
) -> str | tuple[str | None, str, dict[str, Any]]:
    f64 = torch.float64
    rounded = _leaves(list(case.values), dtype)
    indices = case.diff_indices
    try:
        truth_values = _leaves(rounded, f64)
        truth_out, _, _ = _run(reference, truth_values, indices, None)
    except Exception as error:
        return f"the reference cannot run in float64 ({describe_exception(error)})"
    cotangents64 = [c.to(dtype).to(f64) for c in case.random_cotangents(truth_out, "reference")]
    truth_out, truth_grads, _ = _run(reference, _leaves(rounded, f64), indices, cotangents64)
    cotangents = [c.to(dtype) for c in cotangents64]
    try:
        fn_out, fn_grads = case.vjp(_leaves(rounded, dtype), cotangents, dtype)
        ref_out, ref_grads, _ = _run(reference, _leaves(rounded, dtype), indices, cotangents)
    except (RuntimeError, NotImplementedError, TypeError) as error:
        if any(word in str(error) for word in _UNSUPPORTED):
            return f"unsupported on {case.device.type} ({describe_exception(error)})"
        raise
    if len(fn_out) != len(truth_out):
        return (
            f"the Function has {len(fn_out)} differentiable outputs, the reference {len(truth_out)}",
            "",
            {},
        )
    u = unit_roundoff(dtype)
    labels = ["out" if len(fn_out) == 1 else f"out{k}" for k in range(len(fn_out))]
    triples = list(zip(labels, fn_out, ref_out, truth_out, strict=True))
    triples += [
        (f"∂{n}", a, b, t)
        for n, a, b, t in zip(case.diff_names, fn_grads, ref_grads, truth_grads, strict=True)
        if t is not None
    ]
    numbers: dict[str, Any] = {}
    summary = []
    for label, got, ref, truth in triples:
        got = torch.zeros_like(truth) if got is None else got
        ref = torch.zeros_like(truth) if ref is None else ref
        e_fn, e_ref = rel_error(got, truth), rel_error(ref, truth)
        allowed = factor * e_ref + floor_u * u
        ratio = e_fn / e_ref if e_ref > 0 else (0.0 if e_fn == 0 else float("inf"))
        numbers[label] = {"fn_err": e_fn, "ref_err": e_ref, "ratio": ratio, "allowed": allowed}
        if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(truth).all()):
            return f"{label} is not finite in {dtype_name(dtype)} (the reference's is) — overflow", "", numbers
        if e_fn > allowed:
            return (
                f"{label} error {e_fn:.2g} vs the reference's {e_ref:.2g} ({ratio:.3g}×, allowed {allowed:.2g})",
                "",
                numbers,
            )
        summary.append(f"{label} {e_fn:.1g}/{e_ref:.1g}")
    return None, " ".join(summary), numbers


CHECK = Check.of("reference", check_reference)

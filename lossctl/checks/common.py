"""What several checks share: preconditions, float64 runs, gradient comparison and its diagnosis,
non-finite messages and dtype sweeps. Checks import from here, never from each other."""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import torch
from torch.autograd.gradcheck import GradcheckError

from lossctl.case import Case
from lossctl.checks.base import Skip
from lossctl.device import seed_device
from lossctl.diagnose import (
    KINK_HINT,
    GradMismatch,
    ScalarFn,
    compare,
    is_kink,
    named_quantities,
    numerical_gradient,
    sample_indices,
)
from lossctl.diagnose_scale import affordable_elements, localized_mismatch
from lossctl.inputs import derive_seed
from lossctl.probing import Prober
from lossctl.report import Outcome
from lossctl.spec import Tolerance

DIAGNOSE_MAX_ELEMENTS = 2000
"""Elements per argument whose numerical derivative is computed to explain a failure (when they fit)."""
DIAGNOSE_SHARE = 0.25
"""The share of the case's remaining budget a failure's diagnosis may spend."""
DIAGNOSE_MIN_SECONDS = 5.0


def require_differentiable_inputs(case: Case) -> None:
    if not case.diff_indices:
        raise Skip("no input requires grad (set requires_grad: true on a floating tensor)")


def require_function(case: Case, what: str) -> None:
    if not case.target.is_function:
        raise Skip(f"{what} needs a torch.autograd.Function target, not a {case.target.kind.value}")


def float64_values(case: Case) -> list[object]:
    """Float64 copies of the inputs, once the Function is known to run on them (else Skip)."""
    require_differentiable_inputs(case)
    if (why := case.float64_error()) is not None:
        raise Skip(why)
    return case.fresh(torch.float64)


def runs_in_float64(case: Case) -> bool:
    """Whether the Function accepts float64 copies of its inputs on this device (probed once per case)."""
    return case.runs_in_float64()


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ in float64 (0 when both are zero, inf on NaN/inf)."""
    got, want = got.detach().double(), want.detach().double()
    if not bool(torch.isfinite(got).all()):
        return math.inf
    scale = float(want.norm())
    diff = float((got - want).norm())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def worst_rel_error(
    got: Sequence[torch.Tensor | None], want: Sequence[torch.Tensor | None], names: Sequence[str]
) -> tuple[float, str]:
    """The largest rel_error over paired tensors and the name it belongs to (None counts as zeros)."""
    worst, where = 0.0, names[0] if names else ""
    for name, a, b in zip(names, got, want, strict=True):
        if a is None and b is None:
            continue
        if a is None:
            a = torch.zeros_like(b)
        if b is None:
            b = torch.zeros_like(a)
        err = rel_error(a, b)
        if err > worst or (math.isinf(err) and not math.isinf(worst)):
            worst, where = err, name
    return worst, where


def sqrt_eps(dtype: torch.dtype) -> float:
    """√ε of a dtype: far above rounding in a correct computation, far below a real bug."""
    return math.sqrt(torch.finfo(dtype).eps)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def float64_function(
    case: Case, values: list[object]
) -> tuple[Callable[..., tuple[object, ...]], tuple[torch.Tensor, ...]]:
    """The Function as a function of its differentiable inputs only, in float64 (see Case)."""
    return case.float64_function(values)


def mode_text(fast: bool, tolerance: Tolerance) -> str:
    return f"{'fast' if fast else 'slow'} mode, atol {tolerance.atol:g}, rtol {tolerance.rtol:g}"


def promotion_note(case: Case) -> str:
    promoted = case.promoted()
    return f"; {', '.join(promoted)} promoted to float64" if promoted else ""


# --------------------------------------------------------------------------- non-finite values


def first_nonfinite(tensor: torch.Tensor) -> tuple[int, tuple[int, ...], float]:
    """How many elements are NaN/inf, where the first is, and its value."""
    bad = ~torch.isfinite(tensor.detach())
    count = int(bad.sum())
    index = tuple(int(i) for i in bad.nonzero()[0].tolist()) if count else ()
    value = float(tensor.detach()[index]) if count else 0.0
    return count, index, value


def nonfinite_text(what: str, tensor: torch.Tensor) -> str | None:
    """`what is inf at [i, j] (k non-finite)`, or None when every element is finite."""
    count, index, value = first_nonfinite(tensor)
    return f"{what} is {value} at {list(index)} ({count} non-finite)" if count else None


# --------------------------------------------------------------------------- dtype sweeps

LOW_PRECISION_DTYPES = ("float32", "float16", "bfloat16")
"""What low_precision tries unless the spec lists `dtypes:`: what AMP trains in, on every device."""


def default_dtypes(device: torch.device) -> tuple[str, ...]:
    """What `reference` compares in unless the spec lists `dtypes:`."""
    return ("float32",) if device.type == "cpu" else ("float32", "bfloat16")


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def rounded_leaves(values: Sequence[object], dtype: torch.dtype) -> list[object]:
    """Floating tensors cast to `dtype` as new leaves (keeping requires_grad); the rest as is."""
    return [
        v.detach().to(dtype).requires_grad_(v.requires_grad)
        if isinstance(v, torch.Tensor) and v.is_floating_point()
        else v
        for v in values
    ]


# --------------------------------------------------------------------------- gradient diagnosis


def diagnose_gradients(case: Case, values: list[object], *, atol: float, rtol: float) -> list[GradMismatch]:
    """Compare the analytical vector-Jacobian product with central differences, per argument, in
    float64: the worst elements, named in the user's dims. Up to DIAGNOSE_MAX_ELEMENTS elements per
    argument when their forwards fit a share of the case's remaining budget; above that, the wrong
    slice is bisected and the boundary elements measured (lossctl.diagnose_scale): O(log numel)."""
    dtype = torch.float64
    all_outputs = case.float64_outputs()
    positions = case.output_positions(all_outputs)
    cotangents = case.random_cotangents([all_outputs[p] for p in positions], "diagnose")
    _, grads = case.vjp(case.fresh(dtype), cotangents, dtype)

    def scalar(diff: Sequence[torch.Tensor]) -> torch.Tensor:
        outs = case.call(case.substitute(values, diff), dtype)
        return sum((outs[p] * v).sum() for p, v in zip(positions, cotangents, strict=True))

    diff = [values[i].detach() for i in case.diff_indices]  # type: ignore[attr-defined]
    seconds = diagnosis_seconds(case) / max(len(diff), 1)
    forward = _timed_forward(scalar, diff)
    dims = named_quantities(case.names, values, case.point.dims)
    prober = None
    mismatches = []
    for position, (name, grad) in enumerate(zip(case.diff_names, grads, strict=True)):
        x = diff[position]
        arg = case.spec.args.get(name)
        if affordable_elements(seconds, forward) < min(x.numel(), DIAGNOSE_MAX_ELEMENTS):
            key = ("localized", name, rtol)
            if key not in case.diagnoses:
                if prober is None:
                    with torch.no_grad():
                        prober = Prober(
                            lambda d: float(scalar(d)),
                            diff,
                            grads,
                            eps=case.spec.tolerance.eps,
                            tolerance=rtol,
                            seed=derive_seed(case.seed, "diagnose", "blocks"),
                        )
                with torch.no_grad():
                    case.diagnoses[key] = localized_mismatch(
                        prober,
                        position,
                        name,
                        seconds=seconds,
                        forward_seconds=forward,
                        seed=derive_seed(case.seed, "diagnose", "coordinates", name),
                        dims=dims,
                        dim_names=getattr(arg, "shape", None),
                        grad_output=float(cotangents[0])
                        if len(cotangents) == 1 and cotangents[0].numel() == 1
                        else None,
                    )
            if case.diagnoses[key] is not None:
                mismatches.append(case.diagnoses[key])
            continue
        indices = sample_indices(x.numel(), DIAGNOSE_MAX_ELEMENTS, derive_seed(case.seed, "sample", name))
        expected = numerical_gradient(scalar, diff, position, indices, case.spec.tolerance.eps)
        got = torch.zeros_like(x) if grad is None else grad
        flat = got.detach().reshape(-1).cpu()[indices]
        found = compare(
            name,
            expected,
            flat,
            indices,
            tuple(x.shape),
            atol=atol,
            rtol=rtol,
            dims=dims,
            dim_names=getattr(arg, "shape", None),
        )
        if found is not None:
            mismatches.append(_with_kinks(found, scalar, diff, position, case.spec.tolerance.eps, x.shape))
    return mismatches


def diagnosis_seconds(case: Case) -> float:
    """What a failure's diagnosis may spend: a share of the case's remaining budget, and never
    less than a few seconds (a failure found late still gets a localized message)."""
    return max(case.remaining_s() * DIAGNOSE_SHARE, DIAGNOSE_MIN_SECONDS)


def _timed_forward(scalar: ScalarFn, diff: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        scalar(diff)
    return time.perf_counter() - start


def _with_kinks(
    found: GradMismatch, scalar: ScalarFn, diff: list[torch.Tensor], position: int, eps: float, shape: torch.Size
) -> GradMismatch:
    """Blame the inputs, not backward, when the worst elements all sit at kinks."""
    flat_indices = [_flat(e.index, shape) for e in found.worst]
    kinks = sum(is_kink(scalar, diff, position, i, eps) for i in flat_indices)
    if kinks == 0:
        return found
    if kinks == len(flat_indices):
        return replace(found, hint=KINK_HINT)
    note = f"{kinks} of the {len(flat_indices)} worst elements sit at a kink (where finite differences are unreliable)"
    return replace(found, hint=f"{found.hint}; {note}" if found.hint else note)


def _flat(index: tuple[int, ...], shape: torch.Size) -> int:
    flat = 0
    for i, size in zip(index, shape, strict=True):
        flat = flat * size + i
    return flat


# --------------------------------------------------------------------------- the user's source

_GRAPH_CUTS = ("no_grad", ".detach()", ".data", "inference_mode")


def backward_source(case: Case) -> tuple[str, int, list[str]] | None:
    """The file, first line and lines of the Function's backward (None for other targets or when
    the source is not available)."""
    if not case.target.is_function:
        return None
    backward = inspect.unwrap(case.target.obj.backward)
    try:
        lines, first = inspect.getsourcelines(backward)
        file = inspect.getsourcefile(backward)
    except (OSError, TypeError):
        return None
    return (file or "?", first, lines) if file else None


def backward_line(case: Case) -> str | None:
    """`file:line` of the Function's backward, or None."""
    found = backward_source(case)
    if found is None:
        return None
    file, first, lines = found
    offset = next((k for k, text in enumerate(lines) if text.lstrip().startswith("def ")), 0)
    return f"{_short(file)}:{first + offset}"


def in_backward(case: Case, hint: str | None) -> str | None:
    """The hint with where to look: the Function's backward (file:line), when it can be found."""
    where = backward_line(case)
    if where is None:
        return hint
    return f"{hint} (backward at {where})" if hint else f"look at backward ({where})"


def cutting_line(case: Case) -> str | None:
    """`file:line (`code`)` of the first line in backward that cuts the autograd graph (no_grad,
    .detach(), .data), or None."""
    found = backward_source(case)
    if found is None:
        return None
    file, first, lines = found
    for offset, text in enumerate(lines):
        code = text.split("#", 1)[0]
        if any(cut in code for cut in _GRAPH_CUTS):
            return f"{_short(file)}:{first + offset} (`{code.strip()}`)"
    return None


def _short(file: str) -> str:
    from pathlib import Path

    try:
        return str(Path(file).resolve().relative_to(Path.cwd()))
    except ValueError:
        return file


# --------------------------------------------------------------------------- gradcheck with a diagnosis

_MISMATCH = re.compile(r"Jacobian mismatch for output (\d+) with respect to input (\d+)")
_HINTS = {
    "not reentrant": "backward gives different results for the same inputs: it is nondeterministic",
    "undefined output grads": (
        "backward must treat a zero (undefined) grad_output as zero: multiply by grad_output instead of ignoring it"
    ),
    "incorrect type": "backward returns a gradient whose dtype differs from its input's",
    "incorrect size": "backward returns a gradient whose shape differs from its input's",
}


def jacobian_power(fast: bool, inputs: int, what: str = "Jacobian", symbol: str = "J") -> str:
    """What gradcheck (or gradgradcheck) detects in this mode, stated as its detail says it."""
    if not fast:
        return f"detects any {what} element off by > atol + rtol·|element|"
    return (
        f"detects uᵀ{symbol}v off by > atol + rtol·|uᵀ{symbol}v| along one random projection (an error in k of "
        f"the {inputs} input elements shows diluted to ~√(k/{inputs}) of its size there)"
    )


def gradcheck_outcome(case: Case, check_id: str = "gradcheck", fast: bool | None = None) -> Outcome:
    """gradcheck on float64 copies: PASSED, or FAILED with the worst elements named (what the
    `gradcheck` check reports, and edge_sizes at each shrunk size). Slow mode (the full Jacobian)
    where it is small and the case's budget plan gives `check_id` its full method, else fast mode
    (`fast`, when given, decides)."""
    values = float64_values(case)
    tol = case.spec.tolerance
    fast = case.use_fast_mode(check_id=check_id) if fast is None else fast
    settings = mode_text(fast, tol)
    try:
        case.gradcheck(values, fast=fast, check_grad_dtypes=True)
    except GradcheckError as error:
        return _explain_failure(case, values, str(error), settings)
    inputs = sum(case.values[i].numel() for i in case.diff_indices)
    return Outcome.passed(
        f"Jacobian matches ({settings}{promotion_note(case)}); {jacobian_power(fast, inputs, 'Jacobian')}",
        data={"fast_mode": fast, "eps": tol.eps, "atol": tol.atol, "rtol": tol.rtol},
    )


def _explain_failure(case: Case, values: list[object], message: str, settings: str) -> Outcome:
    tol = case.spec.tolerance
    first_line = message.strip().splitlines()[0].rstrip(",")
    data: dict[str, object] = {"gradcheck_message": message[:2000]}
    if _MISMATCH.search(message):
        mismatches = diagnose_gradients(case, values, atol=tol.atol, rtol=tol.rtol)
        if mismatches:
            worst = max(mismatches, key=lambda m: m.rel_err if math.isfinite(m.rel_err) else math.inf)
            others = [m.argument for m in mismatches if m is not worst]
            also = f" (also wrong: {', '.join(others)})" if others else ""
            data["mismatches"] = [m.to_dict() for m in mismatches]
            return Outcome.failed(
                f"{worst.summary()}{also}",
                hint=in_backward(case, worst.hint),
                data=data,
                explain="\n".join(_explain_lines(mismatches, settings)),
            )
        match = _MISMATCH.search(message)
        assert match is not None
        output, position = int(match.group(1)), int(match.group(2))
        name = case.diff_names[position] if position < len(case.diff_names) else f"input {position}"
        return Outcome.failed(
            f"Jacobian mismatch for output {output} w.r.t. `{name}` ({settings})", data=data, explain=message
        )
    hint = next((h for key, h in _HINTS.items() if key in message), None)
    return Outcome.failed(f"{first_line} ({settings})", hint=hint, data=data, explain=message)


def _explain_lines(mismatches: list[GradMismatch], settings: str) -> list[str]:
    lines = [f"gradcheck failed ({settings}); analytical vs central differences:"]
    for m in mismatches:
        lines.append(f"  {m.summary()}; max abs err {m.max_abs:.3g}" + (f" — {m.hint}" if m.hint else ""))
        for e in m.worst:
            lines.append(f"    {e.describe()}")
    return lines


@contextlib.contextmanager
def same_random_state(case: Case, label: str) -> Iterator[None]:
    """Run the block from one seeded random state, restoring the caller's. Two forward+backward
    runs a check compares, each wrapped in it, draw the same numbers in backward too: a backward
    that draws noise is `determinism`'s finding, not a difference between them."""
    devices = [case.device.index or 0] if case.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_device(case.device, derive_seed(case.seed, label))
        yield

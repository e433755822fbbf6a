"""`gradcheck`: torch.autograd.gradcheck on float64 copies, with a diagnosis when it fails."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import torch
from torch.autograd.gradcheck import GradcheckError

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check
from lossctl.checks.common import float64_function, float64_values, mode_text
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
from lossctl.inputs import derive_seed
from lossctl.report import Outcome

SLOW_MODE_MAX_INPUTS = 2048
"""Up to this many input elements, gradcheck builds the full Jacobian (slow mode)."""
SLOW_MODE_MAX_OUTPUTS = 256
DIAGNOSE_MAX_ELEMENTS = 2000
"""Elements per argument whose numerical derivative is computed to explain a failure."""

_MISMATCH = re.compile(r"Jacobian mismatch for output (\d+) with respect to input (\d+)")
_HINTS = {
    "not reentrant": "backward gives different results for the same inputs: it is nondeterministic",
    "undefined output grads": (
        "backward must treat a zero (undefined) grad_output as zero: multiply by grad_output instead of ignoring it"
    ),
    "incorrect type": "backward returns a gradient whose dtype differs from its input's",
    "incorrect size": "backward returns a gradient whose shape differs from its input's",
}


def promotion_note(case: Case) -> str:
    promoted = case.promoted()
    return f"; {', '.join(promoted)} promoted to float64" if promoted else ""


def use_fast_mode(case: Case, values: list[object], *, max_inputs: int = SLOW_MODE_MAX_INPUTS) -> bool:
    """Slow mode (the full Jacobian) for small cases, fast mode (random projections) above."""
    inputs = sum(values[i].numel() for i in case.diff_indices)  # type: ignore[attr-defined]
    outputs = sum(o.numel() for o in differentiable_outputs(case.call(case.fresh(torch.float64), torch.float64)))
    return inputs > max_inputs or outputs > SLOW_MODE_MAX_OUTPUTS


def diagnose_gradients(case: Case, values: list[object], *, atol: float, rtol: float) -> list[GradMismatch]:
    """Compare the analytical vector-Jacobian product with central differences, per argument."""
    dtype = torch.float64
    all_outputs = case.call(case.fresh(dtype), dtype)
    positions = case.output_positions(all_outputs)
    cotangents = case.random_cotangents([all_outputs[p] for p in positions], "diagnose")
    _, grads = case.vjp(case.fresh(dtype), cotangents, dtype)

    def scalar(diff: list[torch.Tensor]) -> torch.Tensor:
        outs = case.call(case.substitute(values, diff), dtype)
        return sum((outs[p] * v).sum() for p, v in zip(positions, cotangents, strict=True))

    diff = [values[i].detach() for i in case.diff_indices]  # type: ignore[attr-defined]
    mismatches = []
    for position, (name, grad) in enumerate(zip(case.diff_names, grads, strict=True)):
        x = diff[position]
        indices = sample_indices(x.numel(), DIAGNOSE_MAX_ELEMENTS, derive_seed(case.seed, "sample", name))
        expected = numerical_gradient(scalar, diff, position, indices, case.spec.tolerance.eps)
        got = torch.zeros_like(x) if grad is None else grad
        flat = got.detach().reshape(-1).cpu()[indices]
        arg = case.spec.args.get(name)
        found = compare(
            name,
            expected,
            flat,
            indices,
            tuple(x.shape),
            atol=atol,
            rtol=rtol,
            dims=named_quantities(case.names, values, case.point.dims),
            dim_names=getattr(arg, "shape", None),
        )
        if found is not None:
            mismatches.append(_with_kinks(found, scalar, diff, position, case.spec.tolerance.eps, x.shape))
    return mismatches


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


def check_gradcheck(case: Case) -> Outcome:
    values = float64_values(case)
    tol = case.spec.tolerance
    fast = use_fast_mode(case, values)
    fn, inputs = float64_function(case, values)
    settings = mode_text(fast, tol)
    try:
        torch.autograd.gradcheck(
            fn,
            inputs,
            eps=tol.eps,
            atol=tol.atol,
            rtol=tol.rtol,
            check_grad_dtypes=True,
            fast_mode=fast,
        )
    except GradcheckError as error:
        return _explain_failure(case, values, str(error), settings)
    return Outcome.passed(
        f"Jacobian matches ({settings}{promotion_note(case)})",
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
                hint=worst.hint,
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


CHECK = Check(
    "gradcheck",
    "torch.autograd.gradcheck on float64 copies, with the worst elements named on failure",
    check_gradcheck,
)

"""`forward_ad`: a Function's jvp (forward-mode AD) agrees with finite differences."""

from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd.function import _SingleLevelFunction
from torch.autograd.gradcheck import GradcheckError

from lossctl.case import Case
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import float64_values, mode_text, require_function
from lossctl.diagnose import compare
from lossctl.inputs import derive_seed
from lossctl.report import Outcome


def defines_jvp(fn: type) -> bool:
    return fn.jvp is not _SingleLevelFunction.jvp


def check_forward_ad(case: Case) -> Outcome:
    # Forward-mode AD calls the deprecated torch.jit.script inside torch on first use: not the
    # user's warning, and under `python -W error` it would turn into an exception.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        return _check_forward_ad(case)


def _check_forward_ad(case: Case) -> Outcome:
    require_function(case, "forward-mode AD")
    if not defines_jvp(case.target.obj):
        raise Skip("the Function defines no jvp (forward-mode AD unsupported)")
    values = float64_values(case)
    tol = case.spec.tolerance
    fast = case.use_fast_mode()
    settings = mode_text(fast, tol)
    try:
        case.gradcheck(
            values,
            fast=fast,
            check_forward_ad=True,
            check_backward_ad=False,
            check_undefined_grad=False,
            check_batched_grad=False,
        )
    except GradcheckError as error:
        return _diagnose(case, values, str(error), settings)
    return Outcome.passed(f"jvp matches finite differences ({settings})")


def _diagnose(case: Case, values: list[object], message: str, settings: str) -> Outcome:
    """Compare the jvp along a random tangent with the central difference of forward."""
    tol = case.spec.tolerance
    dtype = torch.float64
    diff = [values[i].detach() for i in case.diff_indices]  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(derive_seed(case.seed, "forward_ad"))
    tangents = [torch.randn(x.shape, generator=gen, dtype=dtype).to(x.device) for x in diff]
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) for x, t in zip(diff, tangents, strict=True)]
        outputs = case.call(case.substitute(values, duals), dtype)
        jvps = [fwAD.unpack_dual(o).tangent if isinstance(o, torch.Tensor) else None for o in outputs]
    with torch.no_grad():
        plus = case.call(case.substitute(values, [x + tol.eps * t for x, t in zip(diff, tangents, strict=True)]), dtype)
        minus = case.call(
            case.substitute(values, [x - tol.eps * t for x, t in zip(diff, tangents, strict=True)]), dtype
        )
    for k, (jvp, p, m) in enumerate(zip(jvps, plus, minus, strict=True)):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            continue
        expected = ((p - m) / (2 * tol.eps)).reshape(-1)
        got = torch.zeros_like(expected) if jvp is None else jvp.reshape(-1)
        name = "output" if len(outputs) == 1 else f"output {k}"
        found = compare(
            name,
            expected,
            got,
            torch.arange(expected.numel()),
            tuple(p.shape),
            atol=tol.atol,
            rtol=tol.rtol,
            dims=case.point.dims,
        )
        if found is not None:
            return Outcome.failed(
                f"jvp wrong: {found.summary()} ({settings})",
                hint=found.hint,
                explain=message,
                data={"mismatch": found.to_dict()},
            )
    first = message.strip().splitlines()[0].rstrip(",")
    return Outcome.failed(f"jvp wrong: {first} ({settings})", explain=message)


CHECK = Check.of("forward_ad", check_forward_ad)

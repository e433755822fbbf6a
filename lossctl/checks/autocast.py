"""`autocast`: the Function under torch.autocast (CPU bfloat16; CUDA float16) agrees with float32.

Under automatic mixed precision a loss receives its activations in the autocast dtype (the logits
of a Linear run under autocast are bfloat16) while targets and weights stay float32, and
autocastable ops inside forward (matmul, linear) run in the low dtype. The check feeds that: the
first input that requires grad rounded to the autocast dtype, the others float32, forward inside
`torch.autocast`, backward outside (the recommended way) and then inside (as many training loops
do). It catches a backward that mixes dtypes (forward saved low-precision tensors, backward
multiplies them with float32 ones: the missing `@torch.amp.custom_bwd`), a backward whose result
depends on whether it is called inside autocast (not pinned to forward's state by custom_bwd),
overflow, and results further from a float32 run than the dtype explains.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from lossctl.case import Case, engine_rejection
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import (
    dtype_name,
    rel_error,
    require_differentiable_inputs,
    rounded_leaves,
    same_random_state,
)
from lossctl.inputs import derive_seed
from lossctl.loader import describe_exception
from lossctl.report import Outcome

FACTOR = 32
"""How many times the floor (roundoff, rounding of the result, conditioning) an error may be."""
CONDITIONING_DRAWS = 2
PINNED = 64 * torch.finfo(torch.float32).eps
"""Backward inside and outside autocast may differ by float32 reordering noise, no more."""
BWD_HINT = (
    "decorate forward with @torch.amp.custom_fwd(device_type=...) and backward with "
    "@torch.amp.custom_bwd(device_type=...): backward then runs in forward's autocast state "
    "(or cast what backward multiplies to one dtype)"
)


def autocast_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    if device.type == "cuda":
        return (torch.float16,)
    if device.type == "cpu":
        return (torch.bfloat16,)
    return ()


def check_autocast(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    dtypes = autocast_dtypes(case.device)
    if not dtypes:
        raise Skip(f"no autocast dtype is checked on {case.device.type}")
    if case.forward_is_random():
        raise Skip("forward draws random numbers (which the dtype changes): no reference to compare with")
    summaries = []
    data: dict[str, Any] = {}
    for dtype in dtypes:
        result = _check_dtype(case, dtype)
        if isinstance(result, Outcome):
            return result
        summaries.append(result[0])
        data[dtype_name(dtype)] = result[1]
    return Outcome.passed("; ".join(summaries), data=data)


def _check_dtype(case: Case, dtype: torch.dtype) -> Outcome | tuple[str, dict[str, float]]:
    label = f"autocast({case.device.type}, {dtype_name(dtype)})"
    u = torch.finfo(dtype).eps / 2
    rounded = _inputs(case, dtype)
    try:
        ref_out, ref_grads, cotangents = _run(case, rounded_leaves(rounded, torch.float32), None, round_to=dtype)
    except Exception as error:
        if isinstance(error, RuntimeError) and engine_rejection(case, error):
            raise  # what backward returns is wrong in any dtype: the runner names it once
        raise Skip(f"cannot run in float32 for a reference ({describe_exception(error)})") from None
    low_cot = [c.to(dtype) for c in cotangents]
    try:
        out_a, grads_a, _ = _run(case, rounded, low_cot, autocast_forward=dtype)
    except Exception as error:
        return _forward_or_backward(case, rounded, dtype, label, error)
    cond = _conditioning(case, rounded, [c.float() for c in low_cot], ref_out + ref_grads, u)
    names = [f"output {k}" if len(ref_out) > 1 else "out" for k in range(len(ref_out))]
    names += [f"∂{n}" for n in case.diff_names]
    numbers: dict[str, float] = {}
    for name, got, want, c in zip(names, out_a + grads_a, ref_out + ref_grads, cond, strict=True):
        if got is None or want is None:
            continue
        if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(want).all()):
            return Outcome.failed(
                f"under {label}, {name} is not finite (float32 gives finite values) — overflow in {dtype_name(dtype)}",
                hint="compute the reduction or exp in float32: "
                "@torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float32), or .float() inside",
            )
        err = rel_error(got, want)
        floor = max(u, rel_error(want.to(dtype), want), c)
        numbers[name] = err / u
        if err > FACTOR * floor:
            return Outcome.failed(
                f"under {label}, {name} differs from float32 by rel err {err:.2g} = {err / u:.0f} u > "
                f"{FACTOR} × {floor / u:.1f} u (what rounding and conditioning explain)",
                hint="a low-precision path that is wrong (or a sum accumulated in the low dtype): compare it with "
                "the float32 path, or cast inputs with custom_fwd(cast_inputs=torch.float32)",
                data={"rel_err": err, "floor": floor},
            )
    try:
        with _autocast(case, dtype):
            _, grads_b, _ = _run(case, rounded, low_cot, autocast_forward=dtype)
    except Exception as error:
        return Outcome.failed(
            f"backward raises when called inside {label} (it runs outside): {describe_exception(error)}",
            hint=BWD_HINT,
        )
    for name, a, b in zip(case.diff_names, grads_a, grads_b, strict=True):
        if a is None or b is None:
            continue
        diff = rel_error(b, a)
        if diff > PINNED:
            return Outcome.failed(
                f"backward gives another ∂{name} when called inside {label} than outside (rel diff {diff:.2g}): "
                "it runs in the caller's autocast state, not forward's",
                hint=BWD_HINT,
                data={"rel_diff": diff},
            )
    listing = " ".join(f"{name} {value:.1f}u" for name, value in numbers.items())
    return (
        f"{dtype_name(dtype)}: {listing} from float32 (allowed {FACTOR}× floor); backward inside autocast = outside",
        numbers,
    )


def _forward_or_backward(case: Case, rounded: list[Any], dtype: torch.dtype, label: str, error: Exception) -> Outcome:
    """The outcome when forward and backward under autocast raised: a failure unless the Function
    does not take the dtype at all (then autocast is not for it: SKIP, with the way to opt in)."""
    try:
        with _autocast(case, dtype):
            case.call(_leaves(rounded), torch.float32)
    except Exception:
        try:
            case.call(_leaves(rounded), torch.float32)
        except Exception:
            raise Skip(
                f"does not run with {dtype_name(dtype)} inputs ({describe_exception(error)}); to take part in "
                "mixed precision, cast them: @torch.amp.custom_fwd(device_type=..., cast_inputs=torch.float32)"
            ) from None
        return Outcome.failed(
            f"forward raises under {label} (not outside it, on the same inputs): {describe_exception(error)}",
            hint=BWD_HINT,
        )
    return Outcome.failed(f"backward raises after a forward under {label}: {describe_exception(error)}", hint=BWD_HINT)


@contextlib.contextmanager
def _autocast(case: Case, dtype: torch.dtype) -> Iterator[None]:
    with torch.autocast(device_type=case.device.type, dtype=dtype):
        yield


def _inputs(case: Case, dtype: torch.dtype) -> list[Any]:
    """The inputs as AMP delivers them: the first one requiring grad (the activations: logits,
    hidden states) in the autocast dtype, other floating tensors (weights, targets) float32."""
    first = case.diff_indices[0]
    values = list(case.values)
    for k, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            # cast from the case's own inputs (not a float64 copy of them first): one copy each
            to = (dtype if k == first else torch.float32) if v.is_floating_point() else v.dtype
            values[k] = v.detach().to(to, copy=True).requires_grad_(v.requires_grad)
    return values


def _leaves(values: list[Any]) -> list[Any]:
    return [v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v for v in values]


def _run(
    case: Case,
    values: list[Any],
    cotangents: list[torch.Tensor] | None,
    autocast_forward: torch.dtype | None = None,
    round_to: torch.dtype | None = None,
    owned: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    """Forward (under autocast when asked) and backward with `cotangents` (or seeded ones rounded
    to `round_to`); float32 copies of outputs, gradients and the cotangents used. `owned`: the
    values are new leaves made for this run alone (not copied again)."""
    with same_random_state(case, "autocast"):
        return _forward_backward(case, values if owned else _leaves(values), cotangents, autocast_forward, round_to)


def _forward_backward(
    case: Case,
    leaves: list[Any],
    cotangents: list[torch.Tensor] | None,
    autocast_forward: torch.dtype | None,
    round_to: torch.dtype | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
    drawn: list[torch.Tensor] = []

    def make(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if cotangents is None:
            fresh = case.random_cotangents(outputs, "autocast")
            drawn[:] = [c.to(round_to).to(c.dtype) if round_to else c for c in fresh]
        else:
            drawn[:] = [c.to(o.dtype) for c, o in zip(cotangents, outputs, strict=True)]
        return drawn

    if autocast_forward is None:
        outputs, grads = case.vjp(leaves, make, torch.float32)
    else:
        with _autocast(case, autocast_forward):
            outputs = case.call(leaves, torch.float32)
        diff = [outputs[p] for p in case.output_positions(outputs)]
        grads = list(torch.autograd.grad(diff, [leaves[i] for i in case.diff_indices], make(diff), allow_unused=True))
        outputs = diff
    as32 = [o.detach().float() for o in outputs]
    return as32, [g.detach().float() if g is not None else None for g in grads], [c.float() for c in drawn]


def _conditioning(
    case: Case, rounded: list[Any], cotangents: list[torch.Tensor], wants: list[Any], u: float
) -> list[float]:
    """How far the float32 results move when every floating input moves by ±u (relative): the
    error any implementation in the low dtype can have."""
    gen = torch.Generator().manual_seed(derive_seed(case.seed, "autocast", "conditioning"))
    worst = [0.0] * len(wants)
    for _ in range(CONDITIONING_DRAWS):
        outs, grads, _ = _run(case, _moved(rounded, gen, u), cotangents, owned=True)
        for k, (got, want) in enumerate(zip(outs + grads, wants, strict=True)):
            if got is not None and want is not None:
                err = rel_error(got, want)
                worst[k] = max(worst[k], err if math.isfinite(err) else 0.0)
        del outs, grads, got  # before the next draw makes its own
    return worst


def _moved(rounded: list[Any], gen: torch.Generator, u: float) -> list[Any]:
    """New float32 leaves: each floating input times 1 ± u (random signs); other values copied."""
    moved = []
    for v in rounded:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            # ±u in float32, in place: no int64 draw and no temporaries of the input's size
            factor = torch.randint(0, 2, v.shape, generator=gen, dtype=torch.float32).to(v.device)
            factor.mul_(2).sub_(1).mul_(u).add_(1)
            moved.append(factor.mul_(v.detach()).requires_grad_(v.requires_grad))
        else:
            moved.append(_leaves([v])[0])
    return moved


CHECK = Check.of("autocast", check_autocast)

"""Helpers several checks share: preconditions, float64 runs, and norm-relative comparisons."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from lossctl.case import Case, float64_supported
from lossctl.checks.base import Skip
from lossctl.device import seed_device
from lossctl.inputs import derive_seed
from lossctl.spec import Tolerance


def require_differentiable_inputs(case: Case) -> None:
    if not case.diff_indices:
        raise Skip("no input requires grad (set requires_grad: true on a floating tensor)")


def require_function(case: Case, what: str) -> None:
    if not case.target.is_function:
        raise Skip(f"{what} needs a torch.autograd.Function target, not a {case.target.kind.value}")


def float64_values(case: Case) -> list[object]:
    """Float64 copies of the inputs, after checking the Function runs on them (else Skip)."""
    require_differentiable_inputs(case)
    if not float64_supported(case.device):
        raise Skip(f"float64 is not supported on {case.device.type}")
    values = case.fresh(torch.float64)
    try:
        case.call(case.fresh(torch.float64), torch.float64)
    except Exception as error:
        raise Skip(f"cannot run in float64 ({type(error).__name__}: {error})") from None
    return values


def runs_in_float64(case: Case) -> bool:
    """Whether the Function accepts float64 copies of its inputs on this device."""
    if not float64_supported(case.device):
        return False
    try:
        case.call(case.fresh(torch.float64), torch.float64)
    except Exception:
        return False
    return True


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
    """The Function as a function of its differentiable inputs only (the others fixed), run in
    float64: what gradcheck and gradgradcheck take, with those inputs."""

    def fn(*diff: torch.Tensor) -> tuple[object, ...]:
        return case.call(case.substitute(values, diff), torch.float64)

    return fn, tuple(values[i] for i in case.diff_indices)  # type: ignore[misc]


def mode_text(fast: bool, tolerance: Tolerance) -> str:
    return f"{'fast' if fast else 'slow'} mode, atol {tolerance.atol:g}, rtol {tolerance.rtol:g}"


@contextlib.contextmanager
def same_random_state(case: Case, label: str) -> Iterator[None]:
    """Run the block from one seeded random state, restoring the caller's. Two forward+backward
    runs a check compares, each wrapped in it, draw the same numbers in backward too: a backward
    that draws noise is `determinism`'s finding, not a difference between them."""
    devices = [case.device.index or 0] if case.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_device(case.device, derive_seed(case.seed, label))
        yield

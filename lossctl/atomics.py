"""Telling a GPU backward that sums with atomics (a varying order) from one that is wrong.

On CUDA, the backward of scatter_add, index_add, index_put(accumulate=True) and embedding adds
into the same element from many threads: the order, so the rounding, changes from run to run.
Two identical runs then differ in the last bits — expected, not a wrong gradient. When the two
runs repeat bitwise under torch.use_deterministic_algorithms(True) (deterministic kernels where
PyTorch has them), or differ by no more than the rounding of a reordered sum, that is the cause,
and the fix is `tolerance.nondet_tol`, not the gradient.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch

from lossctl.report import Outcome

Grads = Sequence[torch.Tensor | None]
REORDER_ULPS = 64
"""A reordered float sum differs by at most a few units of roundoff of its largest terms."""


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """torch.use_deterministic_algorithms(True, warn_only=True) for the block, then as before
    (warn_only: an op without a deterministic version still runs, instead of raising)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def within_reordering(a: Grads, b: Grads) -> bool:
    """Whether every pair differs by no more than a reordered sum could: REORDER_ULPS units of
    roundoff of the tensor's largest magnitude."""
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if (x is None) != (y is None):
                return False
            continue
        if not (x.is_floating_point() and bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
            if not torch.equal(x, y):
                return False
            continue
        scale = float(torch.maximum(x.abs().max(), y.abs().max())) if x.numel() else 0.0
        bound = REORDER_ULPS * torch.finfo(x.dtype).eps * scale
        if float((x.double() - y.double()).abs().max()) > bound:
            return False
    return True


def atomics_outcome(
    device: torch.device,
    rerun: Callable[[], Grads],
    first: Grads,
    second: Grads,
    grad_diff: float,
    data: dict[str, object],
    max_diff: Callable[[Grads, Grads], float],
) -> Outcome | None:
    """A FAILED outcome that names atomics and `nondet_tol` when two backward passes differ only
    as atomics make them differ; None when the difference looks like a real bug."""
    with deterministic_algorithms():
        again, once_more = rerun(), rerun()
    repeats = max_diff(again, once_more) == 0
    if not repeats and not within_reordering(first, second):
        return None
    how = (
        "they repeat bitwise under torch.use_deterministic_algorithms(True)"
        if repeats
        else f"they differ by no more than a reordered sum ({REORDER_ULPS} units of roundoff)"
    )
    return Outcome.failed(
        f"backward on {device} is nondeterministic (max diff {grad_diff:.3g} between identical runs), "
        f"as atomic adds make it — {how}: the gradient is not wrong",
        hint=f"scatter_add / index_add / index_put(accumulate=True) sum in a varying order on a GPU. "
        f"Set tolerance.nondet_tol: {_round_up(grad_diff):g} (or more) in the spec, or call "
        "torch.use_deterministic_algorithms(True) in training if you need bitwise repeats",
        data={**data, "cause": "atomics", "deterministic_repeats": repeats},
    )


def _round_up(value: float) -> float:
    """The next power of ten at or above `value`: a tolerance to suggest."""
    power = 10.0**-30
    while power < value:
        power *= 10
    return power

"""How many intra-op threads a case gets: one for small cases (where more threads only add
overhead), a worker's share of the cores for large ones, or exactly what --threads asks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from lossctl.spec import Spec, TensorArg, sweep

LARGE_CASE_ELEMENTS = 1 << 18
"""From this many input elements a case's ops are big enough for threads to pay off."""


def case_elements(spec: Spec, point: int) -> int:
    """Elements in a case's tensor arguments."""
    dims = sweep(spec)[point].dims
    total = 0
    for arg in spec.args.values():
        if isinstance(arg, TensorArg):
            total += math.prod(dims[s] if isinstance(s, str) else s for s in arg.shape)
    return total


def threads_for(requested: int | None, elements: int, available: int) -> int:
    """`requested` when given; else 1 for a small case and `available` for a large one."""
    if requested is not None:
        return requested
    return max(1, available) if elements >= LARGE_CASE_ELEMENTS else 1


@contextmanager
def case_threads(requested: int | None, spec: Spec, point: int) -> Iterator[int]:
    """Run a case with its thread count; the caller's count is restored afterwards."""
    before = torch.get_num_threads()
    threads = threads_for(requested, _elements_or_zero(spec, point), before)
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def planned_threads(requested: int | None, cases: list[tuple[Spec, int]], available: int) -> int:
    """The most threads any of these cases will run with (what the report states)."""
    counts = [threads_for(requested, _elements_or_zero(spec, point), available) for spec, point in cases]
    return max(counts, default=requested or 1)


def _elements_or_zero(spec: Spec, point: int) -> int:
    try:
        return case_elements(spec, point)
    except (KeyError, IndexError):
        return 0

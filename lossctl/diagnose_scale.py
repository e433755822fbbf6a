"""A failing gradient's diagnosis at sizes where an element-by-element Jacobian does not fit the
budget: blockwise probes and bisection (lossctl.probing) find the wrong slice, exact central
differences at each dim's first and last index (and the block edges) name elements — O(log numel)
forwards, never O(numel)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from lossctl.diagnose import ElementError, GradMismatch, factor_hint
from lossctl.probing import (
    Block,
    BlockProbe,
    CoordinateProbe,
    Prober,
    Region,
    boundary_coordinates,
    localize,
    merge_failures,
    partition,
)

DIRECTIONS = 2
"""Random directions per block: the gradient is already known to be wrong, this only finds where."""
MIN_COORDINATES_PER_DIM = 2
"""Each dim's first and last index are always measured exactly."""


def affordable_elements(seconds: float, forward_seconds: float) -> int:
    """How many elements' central differences (two forwards each) fit in `seconds`."""
    if forward_seconds <= 0:
        return 2**31
    return max(0, int(seconds / (2 * forward_seconds)))


def localized_mismatch(
    prober: Prober,
    position: int,
    name: str,
    *,
    seconds: float,
    forward_seconds: float,
    seed: int,
    dims: Mapping[str, int],
    dim_names: Sequence[str | int] | None = None,
    grad_output: float | None = None,
) -> GradMismatch | None:
    """The wrong slice of input `position` (bisected) and its worst measured elements, spending
    about `seconds` at `forward_seconds` per evaluation (bisection itself may add O(log numel)
    probes); None when no probe disagrees. `grad_output`: the cotangent when it is one number
    (a gradient off by exactly its inverse ignores grad_output)."""
    deadline = time.perf_counter() + seconds
    shape = prober.shapes[position]
    forward = forward_seconds
    blocks = _blocks_that_fit(prober.shapes, position, seconds / 2, forward)
    probes: list[BlockProbe] = []
    for block in blocks:
        if probes and time.perf_counter() > deadline:
            break
        probes.append(prober.probe(block, directions=DIRECTIONS))
    failed = [p for p in probes if p.failed]
    region, bounded = None, True
    if failed:
        # a run bounded by passing blocks, then the narrowest among those with an error of the
        # largest's order: a wrong column also tips every row block, by its share of each row
        runs = merge_failures(failed)
        largest = max(_run_error(run, failed) for run in runs)
        first, last = max(
            runs,
            key=lambda run: (
                _bounded(run, probes, shape[run[0].dim]),
                _run_error(run, failed) >= 0.1 * largest,
                -(run[1].stop - run[0].start) / shape[run[0].dim],
            ),
        )
        region = localize(prober, first, last)
        bounded = _bounded((first, last), probes, shape[first.dim])
    left = max(deadline - time.perf_counter(), 0.0)
    limit = max(MIN_COORDINATES_PER_DIM * len(shape), min(affordable_elements(left, forward), 256))
    indices = boundary_coordinates(shape, limit, seed)
    if region is not None:  # the region's own ends, measured exactly
        indices += _region_ends(region, shape, seed)
    coordinates = [prober.coordinate(position, index) for index in dict.fromkeys(indices)]
    if region is None and not any(c.failed for c in coordinates):
        return None
    found = _mismatch(name, shape, coordinates, region, dims, dim_names, grad_output)
    if not bounded and found.localized:
        return replace(found, localized=f"{found.localized} (its bounds are where probing stopped: the budget ran out)")
    return found


def _blocks_that_fit(shapes: Sequence[Sequence[int]], position: int, seconds: float, forward: float) -> list[Block]:
    """The input's blocks at the finest stride whose probes all fit `seconds` (a run of failing
    blocks is then bounded by probed ones); when none does, each dim cut at its first and last index."""
    affordable = affordable_elements(seconds, forward) // DIRECTIONS
    for stride in (1, 2, 3, 4, 6, 8):
        blocks = [b for b in partition(shapes, stride) if b.input == position]
        if len(blocks) <= affordable:
            return blocks
    coarse = []
    for dim, size in enumerate(shapes[position]):
        edges = sorted({0, min(1, size), max(size - 1, 0), size})
        coarse += [Block(position, dim, a, b) for a, b in itertools.pairwise(edges) if b > a]
    return coarse


def _bounded(run: tuple[Block, Block], probed: Sequence[BlockProbe], size: int) -> bool:
    """Whether the blocks just outside a failing run were probed and passed (or are the dim's ends)."""
    first, last = run
    passed = [p.block for p in probed if not p.failed and (p.block.input, p.block.dim) == (first.input, first.dim)]
    left = first.start == 0 or any(b.stop == first.start for b in passed)
    right = last.stop == size or any(b.start == last.stop for b in passed)
    return left and right


def _run_error(run, failed: Sequence[BlockProbe]) -> float:
    first, last = run
    return max(
        p.error
        for p in failed
        if (p.block.input, p.block.dim) == (first.input, first.dim) and first.start <= p.block.start < last.stop
    )


def _region_ends(region: Region, shape: Sequence[int], seed: int) -> list[tuple[int, ...]]:
    gen = torch.Generator().manual_seed(seed + 1)
    ends = []
    for at in dict.fromkeys((region.start, region.stop - 1)):
        index = [int(torch.randint(s, (), generator=gen)) for s in shape]
        index[region.dim] = at
        ends.append(tuple(index))
    return ends


def _mismatch(
    name: str,
    shape: Sequence[int],
    coordinates: Sequence[CoordinateProbe],
    region: Region | None,
    dims: Mapping[str, int],
    dim_names: Sequence[str | int] | None,
    grad_output: float | None,
) -> GradMismatch:
    wrong = [c for c in coordinates if c.failed]
    shown = sorted(wrong or coordinates, key=lambda c: -c.error)[:3]
    expected = torch.tensor([c.numerical for c in coordinates], dtype=torch.float64)
    got = torch.tensor([c.analytical for c in coordinates], dtype=torch.float64)
    norm = float(expected.norm())
    rel = float((got - expected).norm()) / norm if norm > 0 else math.inf
    factor = region.factor if region is not None else None
    where = None
    if region is not None:
        label = dim_names[region.dim] if dim_names and isinstance(dim_names[region.dim], str) else None
        amount = f"{factor:.4g}× the numerical" if factor is not None else f"off by {region.error:.2g} of its gradient"
        where = f"{region.describe(shape, label)}: {amount}"
    hint = None
    if factor == 0.0:
        hint = "backward returns zeros there — a loop that stops early, or a mask off by one?"
    elif factor is not None and _inverse(factor, grad_output):
        hint = f"backward ignores grad_output (the gradient is 1/grad_output = {factor:.3g}× off)"
    elif factor is not None:
        hint = factor_hint(factor, dims)
        if region is not None and region.fraction < 1.0:
            local = "right elsewhere: a boundary, a partial last chunk, or an offset in later tiles?"
            hint = f"{hint}; {local}" if hint else local
    return GradMismatch(
        argument=name,
        max_abs=max((abs(c.numerical - c.analytical) for c in coordinates), default=0.0),
        rel_err=rel,
        bad=len(wrong),
        checked=len(coordinates),
        total=math.prod(shape),
        worst=tuple(ElementError(c.index, c.numerical, c.analytical) for c in shown),
        scale=factor,
        hint=hint,
        localized=where,
    )


def _inverse(factor: float, grad_output: float | None) -> bool:
    if grad_output is None or grad_output == 0 or math.isclose(grad_output, 1.0, rel_tol=1e-3):
        return False
    return math.isclose(factor, 1 / grad_output, rel_tol=1e-3)

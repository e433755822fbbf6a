"""Build a case's input tensors from a spec, bit-identically for the same seed on any device."""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from lossctl.spec import Spec, TensorArg, ValueArg


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a spec dtype name (names are validated by the spec parser)."""
    return getattr(torch, name)


def derive_seed(seed: int, *labels: object) -> int:
    """A stable per-purpose seed, so adding an argument or a check never changes another's draws."""
    return zlib.crc32(":".join(map(str, (seed, *labels))).encode()) & 0x7FFF_FFFF


def resolve_shape(arg: TensorArg, dims: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(dims[s] if isinstance(s, str) else s for s in arg.shape)


CHUNK_ELEMENTS = 1 << 24
"""Above this many elements a tensor is drawn in chunks (each from its own seed):
host memory stays at one float64 chunk, the result is written straight into the spec's dtype on
the device, and the chunks are drawn on several threads. At or below it, one draw as always, so
a seed's values at toy and test sizes never changed."""


def build_tensor(
    arg: TensorArg, dims: Mapping[str, int], *, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Draw one tensor on the CPU in float64 (then cast), so every device and dtype sees the
    same values up to rounding; large tensors chunk by chunk (CHUNK_ELEMENTS)."""
    shape = resolve_shape(arg, dims)
    if arg.init == "constant" and arg.special is None:  # nothing to draw: no float64 host copy
        value = 0.0 if arg.value is None else arg.value
        tensor = torch.full(shape, value, dtype=torch_dtype(arg.dtype), device=device)
    elif _chunked(shape):
        tensor = _draw_chunked(arg, dims, shape, seed, device)
    else:
        tensor = _draw(arg, dims, shape, seed).to(torch_dtype(arg.dtype)).to(device)
    return tensor.requires_grad_(arg.requires_grad)


def _chunked(shape: tuple[int, ...]) -> bool:
    return math.prod(shape) > CHUNK_ELEMENTS


def _draw(arg: TensorArg, dims: Mapping[str, int], shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The values of `arg` at `shape` in float64 (int64 for randint) on the CPU, from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def bound(value: float | str | None, default: float) -> float:
        if value is None:
            return default
        return dims[value] if isinstance(value, str) else value

    mean = arg.mean if arg.mean is not None else 0.0
    std = arg.std if arg.std is not None else (0.5 if arg.init == "positive" else 1.0)
    if arg.init == "normal":
        values = torch.randn(shape, generator=gen, dtype=f64) * std + mean
    elif arg.init == "uniform":
        low, high = bound(arg.low, 0.0), bound(arg.high, 1.0)
        values = torch.rand(shape, generator=gen, dtype=f64) * (high - low) + low
    elif arg.init == "randint":
        low, high = int(bound(arg.low, 0)), int(bound(arg.high, 2))
        values = torch.randint(low, high, shape, generator=gen, dtype=torch.int64)
    elif arg.init == "bernoulli":
        p = 0.5 if arg.p is None else arg.p
        values = torch.bernoulli(torch.full(shape, p, dtype=f64), generator=gen)
    elif arg.init in ("simplex", "log_simplex"):
        logits = torch.randn(shape, generator=gen, dtype=f64) * std
        values = logits.log_softmax(-1) if arg.init == "log_simplex" else logits.softmax(-1)
    elif arg.init == "positive":
        values = torch.exp(torch.randn(shape, generator=gen, dtype=f64) * std + mean)
    elif arg.init == "constant":
        values = torch.full(shape, 0.0 if arg.value is None else arg.value, dtype=f64)
    elif arg.init == "choice":
        assert arg.choices is not None  # the spec parser requires `values`
        picks = torch.randint(0, len(arg.choices), shape, generator=gen)
        values = torch.tensor(arg.choices, dtype=f64)[picks]
    else:  # the spec parser rejects other names
        raise AssertionError(arg.init)
    if arg.special is not None:
        values = with_special(values, *arg.special, generator=gen)
    return values


def _draw_chunked(
    arg: TensorArg, dims: Mapping[str, int], shape: tuple[int, ...], seed: int, device: torch.device | str
) -> torch.Tensor:
    """`_draw` chunk by chunk, each chunk from derive_seed(seed, "chunk", k), cast and copied into
    the result as it comes. Chunks are flat runs of elements, or of whole rows (the last dim) for
    simplex inits, which normalize over it. `special:` applies per chunk: every chunk has at least
    one special element, and none is all special."""
    out = torch.empty(shape, dtype=torch_dtype(arg.dtype), device=device)
    flat = out.view(-1)
    by_rows = arg.init in ("simplex", "log_simplex")
    row = shape[-1] if by_rows else 1
    rows_per_chunk = max(1, CHUNK_ELEMENTS // row)
    total_rows = math.prod(shape) // row
    starts = range(0, total_rows, rows_per_chunk)

    def fill(index: int, first_row: int) -> None:
        count = min(rows_per_chunk, total_rows - first_row)
        values = _draw(arg, dims, (count, row) if by_rows else (count,), derive_seed(seed, "chunk", index))
        flat[first_row * row : (first_row + count) * row].copy_(values.view(-1).to(out.dtype))

    threads = max(1, min(torch.get_num_threads(), os.cpu_count() or 1, len(starts)))
    if threads == 1:
        for index, first in enumerate(starts):
            fill(index, first)
    else:  # torch's RNG and casts release the GIL: chunks draw in parallel
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fill, range(len(starts)), starts))
    return out


def with_special(values: torch.Tensor, value: float, fraction: float, *, generator: torch.Generator) -> torch.Tensor:
    """`values` with round(fraction · numel) elements set to `value` at random places: at least
    one, so an ignore_index or a padding row is always exercised, and (below fraction 1) never
    all, so a mean over the others stays defined. A one-element tensor is left alone."""
    numel = values.numel()
    if numel == 0 or (numel == 1 and fraction < 1.0):
        return values
    count = numel if fraction >= 1.0 else min(numel - 1, max(1, round(fraction * numel)))
    places = torch.randperm(values.numel(), generator=generator)[:count]
    flat = values.flatten().clone()
    flat[places] = value
    return flat.reshape(values.shape)


def build_inputs(
    spec: Spec, dims: Mapping[str, int], *, seed: int, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Every argument of a spec: tensors drawn from per-argument seeds, plain values as given."""
    values: dict[str, Any] = {}
    for name, arg in spec.args.items():
        if isinstance(arg, ValueArg):
            values[name] = arg.value
        else:
            values[name] = build_tensor(arg, dims, seed=derive_seed(seed, "arg", name), device=device)
    return values

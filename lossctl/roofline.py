"""How close a benchmark runs to the machine's limits: each call's minimal bytes and FLOPs, the
device's measured memory bandwidth and matmul rate (cached per machine), and % of roofline.

The roofline time of a call is max(bytes / bandwidth, FLOPs / matmul rate): no implementation can
be faster than moving its inputs, outputs and gradients once at the copy bandwidth, or than doing
its matrix products at the rate of one large matmul. % of roofline = roofline time / measured time.
Never prints.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lossctl.device import device_name, synchronize

PHASES = ("forward", "backward", "forward_backward")
COPY_BYTES = {"cpu": 128 * 2**20, "cuda": 2**30}
"""Size of each buffer of the bandwidth copy: far past the last-level cache."""
MATMUL_N = {"cpu": (1024, 2048), "cuda": (4096, 8192)}
"""Smallest and largest side of the square matmul: large enough to be compute-bound."""
MATMUL_TARGET_S = 0.02
"""The matmul size doubles from the smallest until one product takes this long (or reaches the
largest size)."""


# --------------------------------------------------------------------------- work per call


@dataclass(frozen=True)
class Work:
    """The least a call must do: bytes moved (each input read once, each output and gradient
    written once) and FLOPs (matrix products and convolutions, as FlopCounterMode counts them;
    elementwise arithmetic is not counted)."""

    bytes: int
    flops: int


@dataclass(frozen=True)
class PhaseWork:
    forward: Work
    backward: Work | None = None
    forward_backward: Work | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseWork:
        def work(key: str) -> Work | None:
            item = data.get(key)
            return None if item is None else Work(bytes=int(item["bytes"]), flops=int(item["flops"]))

        forward = work("forward")
        if forward is None:
            raise ValueError("work without a forward")
        return cls(forward=forward, backward=work("backward"), forward_backward=work("forward_backward"))


def tensor_bytes(values: Iterable[Any]) -> int:
    """Bytes of the tensors among `values`, each storage counted once (by its largest view)."""
    seen: dict[tuple[int, str], int] = {}
    for value in values:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            key = (storage.data_ptr(), str(value.device))
            seen[key] = max(seen.get(key, 0), value.numel() * value.element_size())
    return sum(seen.values())


def count_flops(work: Callable[[], Any]) -> int:
    """FLOPs of `work` as torch.utils.flop_counter counts them (0 where it is unavailable)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # torch < 2.1
        return 0
    with FlopCounterMode(display=False) as counter:
        work()
    return int(counter.get_total_flops())


def measure_work(
    outputs: Callable[[], Sequence[torch.Tensor]],
    values: Sequence[Any],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
) -> PhaseWork:
    """Bytes and FLOPs of forward, backward and both for one call of a case."""
    produced: list[torch.Tensor] = []
    fwd_flops = count_flops(lambda: produced.extend(outputs()))
    read, written = tensor_bytes(values), tensor_bytes(produced)
    forward = Work(bytes=read + written, flops=fwd_flops)
    if not inputs or not produced:
        return PhaseWork(forward=forward)
    bwd_flops = count_flops(lambda: torch.autograd.grad(produced, list(inputs), list(cotangents)))
    grads = sum(t.numel() * t.element_size() for t in inputs)
    upstream = tensor_bytes(cotangents)
    # Backward reads grad_output and what it needs of the inputs, and writes one gradient per input.
    backward = Work(bytes=upstream + read + grads, flops=bwd_flops)
    both = Work(bytes=read + written + upstream + grads, flops=fwd_flops + bwd_flops)
    return PhaseWork(forward=forward, backward=backward, forward_backward=both)


# --------------------------------------------------------------------------- the machine's limits


@dataclass(frozen=True)
class Limits:
    """One machine's measured limits: copy bandwidth and the rate of one large matmul per dtype."""

    key: str
    """The machine fingerprint the figures belong to (device, torch, threads)."""
    bandwidth: float
    """Bytes per second of a large copy (read + write)."""
    matmul: Mapping[str, float] = field(default_factory=dict)
    """dtype name → FLOP/s of a large square matmul."""
    measured_at: str = ""
    cache_path: str | None = None
    """Where the figures were cached; None when they were not."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "matmul": dict(self.matmul)}


def machine_key(device: torch.device, threads: int) -> str:
    return f"{device.type}|{device_name(device)}|torch {torch.__version__}|{threads} threads"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lossctl"


def machine_limits(
    device: torch.device,
    dtypes: Iterable[str],
    *,
    threads: int,
    cache_dir: Path | None = None,
    refresh: bool = False,
) -> Limits:
    """The limits of this machine for `dtypes`, from the cache when it has them (unless
    `refresh`), else measured now and written to the cache. An unwritable cache is not an error:
    the figures are then measured again next time."""
    key = machine_key(device, threads)
    path = (cache_dir or default_cache_dir()) / "limits.json"
    cache = {} if refresh else _read_cache(path)
    entry = dict(cache.get(key) or {})
    changed = False
    if "bandwidth" not in entry:
        entry["bandwidth"] = measure_bandwidth(device)
        entry["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        changed = True
    matmul = dict(entry.get("matmul") or {})
    for dtype in sorted(set(dtypes)):
        if dtype not in matmul:
            matmul[dtype] = measure_matmul(device, getattr(torch, dtype))
            changed = True
    entry["matmul"] = matmul
    written: str | None = str(path)
    if changed:
        full = _read_cache(path)
        full[key] = entry
        if not _write_cache(path, full):
            written = None
    return Limits(
        key=key,
        bandwidth=float(entry["bandwidth"]),
        matmul={k: float(v) for k, v in matmul.items()},
        measured_at=str(entry.get("measured_at", "")),
        cache_path=written,
    )


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: Mapping[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".limits-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(temp, path)
    except OSError:
        return False
    return True


def _best_seconds(work: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """The fastest of `repeats` timed calls after one untimed one: CUDA events on a GPU (the
    device's own clock), perf_counter around a synchronized call elsewhere."""
    work()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            work()
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            began = time.perf_counter()
            work()
            synchronize(device)
            seconds = time.perf_counter() - began
        best = min(best, seconds)
    return best


def measure_bandwidth(device: torch.device, nbytes: int | None = None, repeats: int = 5) -> float:
    """Bytes per second of copying one large buffer into another (each byte read and written)."""
    nbytes = nbytes or COPY_BYTES.get(device.type, COPY_BYTES["cpu"])
    source = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    seconds = _best_seconds(lambda: target.copy_(source), device, repeats)
    return 2 * source.numel() * 4 / seconds


def measure_matmul(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """FLOP/s of a square matmul, doubling its size until one product takes MATMUL_TARGET_S."""
    size, largest = MATMUL_N.get(device.type, MATMUL_N["cpu"])
    rate = 0.0
    while True:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        seconds = _best_seconds(lambda a=a, b=b: a @ b, device, repeats)
        rate = max(rate, 2 * size**3 / seconds)
        if seconds >= MATMUL_TARGET_S or size >= largest:
            return rate
        size *= 2


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figures:
    """One phase of one callable against the machine's limits."""

    seconds: float
    bytes: int
    flops: int
    roofline_s: float
    bound: str
    """`memory` or `compute`: which limit sets the roofline time."""

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds if self.seconds > 0 else 0.0

    @property
    def fraction(self) -> float:
        """Roofline time / measured time: 1 is running at the machine's limit."""
        return self.roofline_s / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "bytes_per_s": self.bytes_per_s,
            "flops_per_s": self.flops_per_s,
            "fraction_of_roofline": self.fraction,
        }


def roofline_seconds(work: Work, limits: Limits, dtype: str) -> tuple[float, str] | None:
    """max(bytes / bandwidth, FLOPs / matmul rate) and which term wins; None without a matmul
    rate for `dtype` when the work has FLOPs."""
    memory = work.bytes / limits.bandwidth
    if work.flops == 0:
        return memory, "memory"
    rate = limits.matmul.get(dtype)
    if not rate:
        return None
    compute = work.flops / rate
    return (compute, "compute") if compute > memory else (memory, "memory")


def figures(
    median_s: Mapping[str, float | None],
    own: PhaseWork,
    least: PhaseWork,
    limits: Limits,
    dtype: str,
) -> dict[str, Figures]:
    """Per phase: the callable's achieved rates from its own bytes and FLOPs, against the
    roofline of `least` (the fewest FLOPs either implementation needed, so recomputation is not
    rewarded)."""
    result: dict[str, Figures] = {}
    for phase in PHASES:
        seconds, mine, bound_work = median_s.get(phase), getattr(own, phase), getattr(least, phase)
        if seconds is None or mine is None or bound_work is None:
            continue
        roof = roofline_seconds(bound_work, limits, dtype)
        if roof is None:
            continue
        result[phase] = Figures(seconds=seconds, bytes=mine.bytes, flops=mine.flops, roofline_s=roof[0], bound=roof[1])
    return result


def least_work(*works: PhaseWork | None) -> PhaseWork | None:
    """Per phase, the same bytes and the fewest FLOPs among the implementations measured."""
    present = [w for w in works if w is not None]
    if not present:
        return None

    def fewest(phase: str) -> Work | None:
        items = [getattr(w, phase) for w in present if getattr(w, phase) is not None]
        if not items:
            return None
        return Work(bytes=min(i.bytes for i in items), flops=min(i.flops for i in items))

    forward = fewest("forward")
    assert forward is not None  # every PhaseWork has a forward
    return PhaseWork(forward=forward, backward=fewest("backward"), forward_backward=fewest("forward_backward"))

"""Peak memory of a case and of each of its checks: Linux's resettable high-water mark (VmHWM),
else the process's ru_maxrss; on CUDA, torch.cuda.max_memory_allocated after a reset."""

from __future__ import annotations

import contextlib
import gc
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

MB = 2**20
LARGE_CASE_BYTES = 8 * MB
"""Inputs at least this large get one forward+backward measured on its own (the unit a case's
peak is also given in); below it RSS's page granularity and allocator noise swamp the figure."""
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_mb(key: str) -> float | None:
    try:
        with open(_STATUS, encoding="ascii") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else None


def rss_mb() -> float | None:
    """This process's resident memory now, MB (None off Linux)."""
    return _status_mb("VmRSS")


def high_water_mb() -> float | None:
    """This process's peak resident memory since the last reset_high_water(), MB (None off Linux)."""
    return _status_mb("VmHWM")


OWNS_PROCESS = False
"""Set by the `lossctl` commands and by worker processes: the process is lossctl's, so resetting
its peak-RSS mark per check is fine. Resetting also lowers the ru_maxrss that the process's parent
(wait4, /usr/bin/time) and the process itself later read, so lossctl never does it inside a
process it was only called from (the Python API, the pytest plugin): there the case's peak is the
process's so far, and says so."""


def claim_process() -> None:
    """This process runs lossctl and nothing else of the user's: per-case peaks may reset the mark."""
    global OWNS_PROCESS
    OWNS_PROCESS = True


def reset_high_water() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0: `5` to clear_refs);
    False where that is not possible, or not lossctl's to do (OWNS_PROCESS)."""
    if not OWNS_PROCESS:
        return False
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def process_peak_mb() -> float | None:
    """This process's peak resident memory since it started, MB (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def release_freed(collect: bool = False) -> None:
    """Hand glibc's freed heap pages back to the kernel (malloc_trim, a few ms), so what RSS shows
    next is live memory, not the allocator's retention of what an earlier check freed (measured:
    most of the RSS that crept up across a case's checks was that). `collect`: first collect
    garbage cycles too (~0.2 s with torch loaded: once per case, not per check)."""
    if collect:
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


_LIBC: Any = None
"""glibc once found; False once it was not (find_library starts subprocesses: ~25 ms a try)."""


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            with contextlib.suppress(OSError):
                name = ctypes.util.find_library("c")
                _LIBC = ctypes.CDLL(name) if name else False
    if _LIBC is False:
        raise OSError("no glibc")
    return _LIBC


def tensor_bytes(values: Any) -> int:
    """Bytes held by the tensors among `values` (a sequence or mapping, one level deep)."""
    items = values.values() if isinstance(values, Mapping) else values
    return sum(v.numel() * v.element_size() for v in items if isinstance(v, torch.Tensor))


@dataclass
class Peak:
    """What one measured stretch reached above the case's baseline, MB (None: not measurable here)."""

    mb: float | None = None


class CaseMemory:
    """One case's memory: the baseline when it starts (inputs built), its peak, and the peak of
    each measured stretch (a check) above that baseline. On Linux the kernel's high-water mark is
    reset per stretch, so each figure is this case's and this check's own; elsewhere only the
    process's peak so far is known (`per_case` False). On CUDA the stretches' peaks are the
    allocator's (max_memory_allocated above what was allocated at the case's start)."""

    def __init__(self, device: torch.device, large: bool = False) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.large = large
        """A large case: garbage cycles are collected once at its start as well."""
        # an earlier case's freed memory is handed back first: this case's baseline and peak
        # are then its own (malloc_trim costs ~10 µs when there is nothing to give back)
        release_freed(collect=large)
        self.per_case = reset_high_water()
        self.baseline_mb = rss_mb() if self.per_case else None
        self.peak_mb = self.baseline_mb
        self.cuda_baseline_mb = self.cuda_peak_mb = None
        if self.cuda:
            torch.cuda.synchronize(device)
            self.cuda_baseline_mb = self.cuda_peak_mb = torch.cuda.memory_allocated(device) / MB
            torch.cuda.reset_peak_memory_stats(device)

    def _fold(self) -> float | None:
        """Fold the high-water mark since the last reset into the case's peak; return it."""
        if not self.per_case:
            return None
        mark = high_water_mb()
        if mark is not None and self.peak_mb is not None:
            self.peak_mb = max(self.peak_mb, mark)
        return mark

    @contextlib.contextmanager
    def measure(self) -> Iterator[Peak]:
        """Measure the stretch run inside: `peak.mb` is set, on exit, to its peak above the case's
        baseline (CUDA: allocated memory; else RSS)."""
        peak = Peak()
        self._fold()
        release_freed()
        reset_high_water()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield peak
        finally:
            mark = self._fold()
            if self.cuda:
                torch.cuda.synchronize(self.device)
                top = torch.cuda.max_memory_allocated(self.device) / MB
                self.cuda_peak_mb = max(self.cuda_peak_mb or 0.0, top)
                peak.mb = top - (self.cuda_baseline_mb or 0.0)
            elif mark is not None and self.baseline_mb is not None:
                peak.mb = max(mark - self.baseline_mb, 0.0)

    def forward_backward_peak(self, run: Any) -> float | None:
        """The peak above what was live just before `run()` (one forward+backward), MB; None when
        it raised or nothing is measurable."""
        if not self.per_case and not self.cuda:
            return None
        release_freed()  # before reading what is live: the allocator's retention is not
        before = torch.cuda.memory_allocated(self.device) / MB if self.cuda else rss_mb()
        with self.measure() as peak:
            try:
                run()
            except Exception:  # the checks report a forward or backward that raises
                return None
        if peak.mb is None or before is None:
            return None
        base = (self.cuda_baseline_mb if self.cuda else self.baseline_mb) or 0.0
        return max(peak.mb + base - before, 0.0)

    def resources(self, inputs_bytes: int, forward_backward_mb: float | None) -> dict[str, float]:
        """The case's memory as plain numbers for CaseResult.resources (see its docstring)."""
        self._fold()
        out: dict[str, float] = {}
        inputs_mb = inputs_bytes / MB
        out["inputs_mb"] = inputs_mb
        if self.per_case and self.peak_mb is not None and self.baseline_mb is not None:
            out["peak_rss_mb"] = self.peak_mb
            out["baseline_rss_mb"] = self.baseline_mb
            out["peak_rss_per_case"] = 1.0
        elif (process := process_peak_mb()) is not None:
            out["peak_rss_mb"] = process
            out["peak_rss_per_case"] = 0.0  # the process's peak so far: earlier cases included
        if self.cuda and self.cuda_peak_mb is not None:
            out["peak_cuda_mb"] = self.cuda_peak_mb
            out["baseline_cuda_mb"] = self.cuda_baseline_mb or 0.0
        above = self.peak_above_baseline_mb()
        if above is not None:
            out["peak_above_baseline_mb"] = above
            if inputs_bytes >= LARGE_CASE_BYTES:  # below, RSS's granularity swamps the ratio
                out["peak_x_inputs"] = above / inputs_mb
        if forward_backward_mb is not None:
            out["forward_backward_peak_mb"] = forward_backward_mb
            if above is not None and forward_backward_mb > 0:
                out["peak_x_forward_backward"] = above / forward_backward_mb
        return out

    def peak_above_baseline_mb(self) -> float | None:
        if self.cuda and self.cuda_peak_mb is not None:
            return self.cuda_peak_mb - (self.cuda_baseline_mb or 0.0)
        if self.per_case and self.peak_mb is not None and self.baseline_mb is not None:
            return self.peak_mb - self.baseline_mb
        return None

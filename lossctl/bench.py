"""`lossctl bench`: time forward, backward and both, measure memory, compare with a reference.

What is timed (`BenchTask`) is kept apart from what was measured (`Timing`, `Subject`,
`BenchCase`): each timing keeps its raw samples and derives median, IQR and a noise flag.
Timings use torch.utils.benchmark.Timer (adaptive autorange, its CUDA synchronization, an explicit
thread count) after a warm-up that runs until consecutive calls agree. Never prints.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch.utils.benchmark import Timer

from lossctl.bench_options import SCHEMA_VERSION, BenchOptions, load_saved, parse_dims, parse_percent
from lossctl.case import Case, differentiable_outputs
from lossctl.device import resolve_device
from lossctl.errors import UsageError
from lossctl.inputs import torch_dtype
from lossctl.loader import describe_exception, format_user_traceback
from lossctl.report import Environment
from lossctl.roofline import Figures, Limits, PhaseWork, figures, least_work, machine_limits, measure_work
from lossctl.spec import FLOAT_DTYPES, Spec, sweep
from lossctl.suite import Job

NOISY = 0.10
"""A timing is flagged noisy when IQR / median exceeds this."""

OnProgress = Callable[[str, int, int], None]
"""Called with (label, cases done, cases total)."""


@dataclass(frozen=True)
class Timing:
    """Seconds per call: every raw sample (each the mean of `number_per_run` calls)."""

    times: tuple[float, ...]
    number_per_run: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[2] - q[0]

    @property
    def noisy(self) -> bool:
        return self.median > 0 and self.iqr / self.median > NOISY

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "iqr_s": self.iqr,
            "noisy": self.noisy,
            "number_per_run": self.number_per_run,
            "times_s": list(self.times),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timing:
        return cls(times=tuple(data["times_s"]), number_per_run=int(data["number_per_run"]))


@dataclass(frozen=True)
class Subject:
    """Measurements of one callable (the Function, or its reference) on one case."""

    forward: Timing | None
    backward: Timing | None
    forward_backward: Timing | None
    peak_bytes: int | None
    """Memory above the inputs at the peak of forward+backward; None when not measurable."""
    peak_method: str
    saved_bytes: int | None
    """Bytes of the tensors saved for backward (distinct storages), inputs included."""
    saved_extra_bytes: int | None
    """The same, without the inputs' own storage."""
    work: PhaseWork | None = None
    """Bytes and FLOPs per call of each phase (None when they could not be counted)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("forward", "backward", "forward_backward"):
            timing = getattr(self, key)
            data[key] = None if timing is None else timing.to_dict()
        data["work"] = None if self.work is None else self.work.to_dict()
        return data

    def medians(self) -> dict[str, float | None]:
        return {
            key: None if getattr(self, key) is None else getattr(self, key).median
            for key in ("forward", "backward", "forward_backward")
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subject:
        timings = {
            key: None if data.get(key) is None else Timing.from_dict(data[key])
            for key in ("forward", "backward", "forward_backward")
        }
        return cls(
            **timings,
            peak_bytes=data.get("peak_bytes"),
            peak_method=data.get("peak_method", ""),
            saved_bytes=data.get("saved_bytes"),
            saved_extra_bytes=data.get("saved_extra_bytes"),
            work=PhaseWork.from_dict(data["work"]) if data.get("work") else None,
        )


@dataclass(frozen=True)
class BenchCase:
    case: str
    spec: str
    function: str
    dims: Mapping[str, int]
    dtype: str
    device: str
    elements: int
    """Elements in the floating inputs: the size that throughput and scaling refer to."""
    function_result: Subject | None
    reference: Subject | None = None
    reference_name: str | None = None
    error: str | None = None
    traceback: str | None = None
    setup_failed: bool = False
    """True when the case could not be built (the Function did not load): nothing ran."""

    @property
    def key(self) -> str:
        """How a case is matched against a saved run."""
        return f"{self.function}|{self.case}|{self.dtype}"

    @property
    def throughput(self) -> float | None:
        fb = self.function_result.forward_backward if self.function_result else None
        timing = fb or (self.function_result.forward if self.function_result else None)
        return self.elements / timing.median if timing and timing.median > 0 else None

    @property
    def speedup(self) -> float | None:
        """Reference time / Function time for forward+backward (> 1: the Function is faster)."""
        mine = self.function_result.forward_backward if self.function_result else None
        theirs = self.reference.forward_backward if self.reference else None
        if mine is None or theirs is None or mine.median == 0:
            return None
        return theirs.median / mine.median

    @property
    def memory_ratio(self) -> float | None:
        """Function peak / reference peak (< 1: the Function is leaner)."""
        mine = self.function_result.peak_bytes if self.function_result else None
        theirs = self.reference.peak_bytes if self.reference else None
        if mine is None or not theirs:
            return None
        return mine / theirs

    def against(self, limits: Limits | None) -> dict[str, dict[str, Figures]]:
        """Per callable (`function`, `reference`) and phase: achieved rates and % of roofline."""
        if limits is None:
            return {}
        mine = self.function_result.work if self.function_result else None
        theirs = self.reference.work if self.reference else None
        least = least_work(mine, theirs)
        result: dict[str, dict[str, Figures]] = {}
        for who, subject in (("function", self.function_result), ("reference", self.reference)):
            if subject is not None and subject.work is not None and least is not None:
                result[who] = figures(subject.medians(), subject.work, least, limits, self.dtype)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "spec": self.spec,
            "function": self.function,
            "dims": dict(self.dims),
            "dtype": self.dtype,
            "device": self.device,
            "elements": self.elements,
            "function_result": self.function_result.to_dict() if self.function_result else None,
            "reference": self.reference.to_dict() if self.reference else None,
            "reference_name": self.reference_name,
            "throughput_per_s": self.throughput,
            "speedup": self.speedup,
            "memory_ratio": self.memory_ratio,
            "error": self.error,
            "traceback": self.traceback,
            "setup_failed": self.setup_failed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchCase:
        return cls(
            case=data["case"],
            spec=data["spec"],
            function=data["function"],
            dims=data["dims"],
            dtype=data["dtype"],
            device=data["device"],
            elements=int(data["elements"]),
            function_result=Subject.from_dict(data["function_result"]) if data.get("function_result") else None,
            reference=Subject.from_dict(data["reference"]) if data.get("reference") else None,
            reference_name=data.get("reference_name"),
            error=data.get("error"),
            traceback=data.get("traceback"),
            setup_failed=bool(data.get("setup_failed", False)),
        )


@dataclass(frozen=True)
class Fingerprint(Environment):
    """Where a benchmark ran, and in which dtype: results from different fingerprints are not
    comparable."""

    dtype: str = "as in the specs"

    def differences(self, other: Fingerprint) -> list[str]:
        return [
            f"{name}: {getattr(other, name)} then, {getattr(self, name)} now"
            for name in ("torch", "device_name", "threads", "dtype", "python", "platform")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class Comparison:
    """One case against a saved run of the same case."""

    key: str
    case: str
    before_s: float
    after_s: float
    noise_s: float
    """The two runs' IQRs added: a change inside this band is not a change."""
    slower_than: float | None
    """--fail-slower's fraction, when given."""

    @property
    def change(self) -> float:
        return self.after_s / self.before_s - 1 if self.before_s > 0 else 0.0

    @property
    def regressed(self) -> bool:
        if self.slower_than is None:
            return False
        return self.change > self.slower_than and (self.after_s - self.before_s) > self.noise_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change, "regressed": self.regressed}


@dataclass(frozen=True)
class BenchReport:
    cases: tuple[BenchCase, ...]
    fingerprint: Fingerprint
    scaling: Mapping[str, float] = field(default_factory=dict)
    """Per spec with a sweep: k in time ∝ elementsᵏ (least squares on log-log)."""
    comparisons: tuple[Comparison, ...] = ()
    compared_with: str | None = None
    fingerprint_differences: tuple[str, ...] = ()
    interrupted: bool = False
    """Ctrl-C stopped the run: `cases` holds those that finished."""
    limits: Limits | None = None
    """The machine's measured bandwidth and matmul rates; None when not measured."""

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]

    @property
    def errors(self) -> list[BenchCase]:
        return [c for c in self.cases if c.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": asdict(self.fingerprint),
            "cases": [{**c.to_dict(), "roofline": _figures_dict(c.against(self.limits))} for c in self.cases],
            "scaling": dict(self.scaling),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "compared_with": self.compared_with,
            "fingerprint_differences": list(self.fingerprint_differences),
            "interrupted": self.interrupted,
            "limits": None if self.limits is None else self.limits.to_dict(),
        }


def _figures_dict(by_subject: Mapping[str, Mapping[str, Figures]]) -> dict[str, Any]:
    return {who: {phase: f.to_dict() for phase, f in phases.items()} for who, phases in by_subject.items()}


# --------------------------------------------------------------------------- running


def run_bench(jobs: Sequence[Job], options: BenchOptions, on_progress: OnProgress | None = None) -> BenchReport:
    """Benchmark every case of every job. Fatal misuse (device, dtype) raises LossctlError;
    a Function that raises becomes a case with `error`."""
    from lossctl.runner import SetupFailure, build_cases, environment
    from lossctl.torch_state import isolated_state

    jobs = [job for job in jobs if job.spec.world_size is None]  # distributed specs: `lossctl check` only
    device = resolve_device(options.device)
    dtype = _resolve_dtype(options.dtype, device)
    threads = options.threads or torch.get_num_threads()
    here = asdict(environment(device))
    fingerprint = Fingerprint(**{**here, "threads": threads}, dtype=options.dtype or "as in the specs")
    if options.dims:
        known = set().union(*(_dim_names(job.spec) for job in jobs)) if jobs else set()
        for name in options.dims:
            if name not in known:
                raise UsageError(
                    f"--dims: no spec has a dim `{name}`",
                    hint=f"dims in these specs: {', '.join(sorted(known)) or 'none'}",
                )
    planned: list[tuple[Job, Any]] = []
    for job in jobs:
        spec = _with_dims(job.spec, options.dims)
        planned.append((replace(job, spec=spec), len(sweep(spec))))
    total = sum(n for _, n in planned)
    done = 0
    results: list[BenchCase] = []
    interrupted = False
    try:
        for job, _ in planned:
            seed = job.spec.seed if options.seed is None else options.seed
            for item in build_cases(job, device, seed):
                if isinstance(item, SetupFailure):
                    if on_progress:
                        on_progress(item.case_id, done, total)
                    results.append(setup_failure(job, item))
                else:
                    if on_progress:
                        on_progress(item.id, done, total)
                    with isolated_state():  # a case that sets threads or flags must not slow the next
                        results.append(_bench_case(item, dtype, options, threads))
                done += 1
    except KeyboardInterrupt:  # keep what finished: the caller prints and saves it
        interrupted = True
    if on_progress:
        on_progress("done", total, total)
    scaling = _scaling(results)
    comparisons: tuple[Comparison, ...] = ()
    differences: tuple[str, ...] = ()
    if options.compare is not None:
        comparisons, differences = _compare(results, fingerprint, options.compare, options.fail_slower)
    return BenchReport(
        cases=tuple(results),
        fingerprint=fingerprint,
        scaling=scaling,
        comparisons=comparisons,
        compared_with=options.compare_name,
        fingerprint_differences=differences,
        interrupted=interrupted,
        limits=_limits(results, device, threads, options) if options.roofline else None,
    )


def _limits(cases: Sequence[BenchCase], device: torch.device, threads: int, options: BenchOptions) -> Limits | None:
    """The machine's limits for the dtypes that did matrix work, at the benchmark's thread count."""
    subjects = [s for c in cases for s in (c.function_result, c.reference) if s is not None and s.work is not None]
    if not subjects:
        return None
    dtypes = {c.dtype for c in cases for s in (c.function_result, c.reference) if s and s.work and _has_flops(s.work)}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return machine_limits(
            device, dtypes, threads=threads, cache_dir=options.limits_cache, refresh=options.remeasure
        )
    except RuntimeError:  # out of memory for the copy, a dtype without matmul on this device
        return None
    finally:
        torch.set_num_threads(before)


def _has_flops(work: PhaseWork) -> bool:
    return any(w is not None and w.flops > 0 for w in (work.forward, work.backward, work.forward_backward))


def setup_failure(job: Job, failure: Any) -> BenchCase:
    return BenchCase(
        case=failure.case_id,
        spec=job.spec.name,
        function=job.spec.function,
        dims=failure.dims,
        dtype="",
        device="",
        elements=0,
        function_result=None,
        error=failure.message,
        traceback=failure.details,
        setup_failed=True,
    )


def _resolve_dtype(name: str | None, device: torch.device) -> torch.dtype | None:
    if name is None:
        return None
    if name not in FLOAT_DTYPES:
        raise UsageError(f"--dtype: `{name}` is not a floating dtype", hint=f"use one of {', '.join(FLOAT_DTYPES)}")
    dtype = torch_dtype(name)
    try:
        probe = torch.ones(4, dtype=dtype, device=device, requires_grad=True)
        torch.autograd.grad((probe * probe).exp().sum(), probe)
    except (RuntimeError, TypeError) as error:
        raise UsageError(
            f"--dtype {name} is not supported on {device} ({str(error).splitlines()[0]})",
            hint="pick another --dtype or --device",
        ) from None
    return dtype


def _dim_names(spec: Spec) -> set[str]:
    """The dims a spec has, the default inputs' N and C included."""
    return set(spec.dims) | ({"N", "C"} if not spec.args_given else set())


def _with_dims(spec: Spec, dims: Mapping[str, tuple[int, ...]]) -> Spec:
    if not dims:
        return spec
    known = _dim_names(spec)
    updated = {**spec.dims, **{k: v for k, v in dims.items() if k in known}}
    return replace(spec, dims=updated)


def _bench_case(case: Case, dtype: torch.dtype | None, options: BenchOptions, threads: int) -> BenchCase:
    values = case.fresh(dtype)
    work_dtype = dtype or case.working_dtype
    elements = sum(v.numel() for v in values if isinstance(v, torch.Tensor) and v.is_floating_point())
    base = BenchCase(
        case=case.id,
        spec=case.spec.name,
        function=case.spec.function,
        dims=dict(case.point.dims),
        dtype=str(work_dtype).removeprefix("torch."),
        device=str(case.device),
        elements=elements,
        function_result=None,
    )
    try:
        mine = measure(case.function(dtype), values, case, options, threads)
    except (Exception, SystemExit) as error:  # the user's code raised, or called sys.exit
        return replace(base, error=describe_exception(error), traceback=format_user_traceback(error))
    reference = None
    if case.spec.reference:
        from lossctl.checks.reference import load_reference

        try:
            reference = measure(load_reference(case), case.fresh(dtype), case, options, threads)
        except Exception as error:
            return replace(
                base,
                function_result=mine,
                reference_name=case.spec.reference,
                error=f"reference: {describe_exception(error)}",
                traceback=format_user_traceback(error),
            )
    return replace(base, function_result=mine, reference=reference, reference_name=case.spec.reference)


def measure(fn: Callable[..., Any], values: list[Any], case: Case, options: BenchOptions, threads: int) -> Subject:
    """Time forward, backward alone (on a retained graph) and forward+backward of `fn(*values)`."""
    device = case.device
    inputs = [values[i] for i in case.diff_indices]
    kwargs = dict(case.kwargs)

    def outputs() -> list[torch.Tensor]:
        result = fn(*values, **kwargs)
        return differentiable_outputs(result if isinstance(result, tuple | list) else (result,))

    def forward() -> None:
        fn(*values, **kwargs)

    probe = outputs()
    differentiable = bool(inputs and probe)
    cotangents = case.random_cotangents(probe, "bench") if differentiable else []
    del probe  # its graph holds what forward saved: at [32768, 128256] that is gigabytes

    def forward_backward() -> None:
        # torch.autograd.grad returns gradients instead of accumulating them into .grad, so
        # nothing accumulates between calls.
        torch.autograd.grad(outputs(), inputs, cotangents)

    retained = outputs() if differentiable else []

    def backward() -> None:
        torch.autograd.grad(retained, inputs, cotangents, retain_graph=True)

    fwd = _time(forward, device, options, threads)
    fwd_bwd = _time(forward_backward, device, options, threads) if differentiable else None
    try:
        bwd = _time(backward, device, options, threads) if differentiable else None
    except RuntimeError:
        bwd = None  # the backward frees what it saved: it cannot run twice on one graph
    peak, method = _peak_memory(forward_backward if differentiable else forward, device)
    saved, extra = _saved_bytes(outputs, inputs, values)
    try:
        work = measure_work(outputs, [*values, *kwargs.values()], inputs if differentiable else [], cotangents)
    except Exception:  # code that cannot run under the FLOP counter's dispatch mode: no figures, no failure
        work = None
    return Subject(fwd, bwd, fwd_bwd, peak, method, saved, extra, work)


def _time(work: Callable[[], None], device: torch.device, options: BenchOptions, threads: int) -> Timing:
    _warm_up(work, device, budget_s=min(1.0, 5 * options.min_time))
    timer = Timer(stmt="work()", globals={"work": work}, num_threads=threads)
    # Timer synchronizes the *current* CUDA device around each block: make it the one timed (cuda:1).
    current = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with current:
        measurement = timer.adaptive_autorange(
            threshold=NOISY, min_run_time=options.min_time, max_run_time=options.max_time
        )
    return Timing(times=tuple(measurement.times), number_per_run=int(measurement.number_per_run))


def _warm_up(work: Callable[[], None], device: torch.device, *, budget_s: float = 1.0, max_calls: int = 50) -> None:
    """Call until three consecutive calls agree within 10% (caches, allocator, lazy init), and
    at least three times whatever the budget: a first call that autotunes (a Triton kernel,
    cuBLAS heuristics) may alone outlast the budget."""
    from lossctl.device import synchronize

    recent: list[float] = []
    deadline = time.perf_counter() + budget_s
    for _ in range(max_calls):
        synchronize(device)
        start = time.perf_counter()
        work()
        synchronize(device)
        recent = [*recent, time.perf_counter() - start][-3:]
        if len(recent) == 3 and max(recent) <= 1.1 * min(recent):
            return
        if time.perf_counter() > deadline and len(recent) == 3:
            return


def _peak_memory(work: Callable[[], None], device: torch.device) -> tuple[int | None, str]:
    """Peak memory above what was allocated before `work`: exact on CUDA (the caching allocator's
    max_memory_allocated); on CPU the op-level peak from the profiler's memory events (allocations
    inside one op that are freed before it returns are not seen: a lower bound)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, "cuda max_memory_allocated"
    if device.type != "cpu":
        return None, "n/a"
    from torch.profiler import ProfilerActivity, profile

    try:
        with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            work()
    except Exception:
        return None, "n/a"
    events = sorted((e for e in prof.events() if e.cpu_parent is None), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return peak, "cpu profiler, op-level (lower bound)"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side logs 'profiler_start/stop' straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _saved_bytes(
    outputs: Callable[[], list[torch.Tensor]], inputs: list[torch.Tensor], values: list[Any]
) -> tuple[int | None, int | None]:
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outputs()
    except Exception:
        return None, None
    own = {v.untyped_storage().data_ptr() for v in values if isinstance(v, torch.Tensor)}
    total = sum(storages.values())
    extra = sum(n for ptr, n in storages.items() if ptr not in own)
    return total, extra


def _scaling(cases: Sequence[BenchCase]) -> dict[str, float]:
    """k in time ∝ elementsᵏ for each spec measured at two or more sizes."""
    by_spec: dict[str, list[tuple[float, float]]] = {}
    for case in cases:
        fb = case.function_result.forward_backward if case.function_result else None
        timing = fb or (case.function_result.forward if case.function_result else None)
        if timing and case.elements > 0 and timing.median > 0:
            by_spec.setdefault(case.spec, []).append((math.log(case.elements), math.log(timing.median)))
    scaling = {}
    for spec, points in by_spec.items():
        xs = [x for x, _ in points]
        if len(set(xs)) < 2:
            continue
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(y for _, y in points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
        scaling[spec] = slope
    return scaling


def _compare(
    cases: Sequence[BenchCase], fingerprint: Fingerprint, saved: Mapping[str, Any], slower: float | None
) -> tuple[tuple[Comparison, ...], tuple[str, ...]]:
    try:
        before_print = Fingerprint(**saved["fingerprint"])
        before = {BenchCase.from_dict(c).key: BenchCase.from_dict(c) for c in saved["cases"]}
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"--compare: not a lossctl bench --save file ({error})") from None
    comparisons = []
    for case in cases:
        old = before.get(case.key)
        if old is None or case.function_result is None or old.function_result is None:
            continue
        mine = case.function_result.forward_backward or case.function_result.forward
        theirs = old.function_result.forward_backward or old.function_result.forward
        if mine is None or theirs is None:
            continue
        comparisons.append(
            Comparison(
                key=case.key,
                case=case.case,
                before_s=theirs.median,
                after_s=mine.median,
                noise_s=theirs.iqr + mine.iqr,
                slower_than=slower,
            )
        )
    return tuple(comparisons), tuple(fingerprint.differences(before_print))


__all__ = ["SCHEMA_VERSION", "BenchOptions", "load_saved", "parse_dims", "parse_percent", "run_bench"]

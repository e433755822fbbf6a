"""Run the selected checks on every case of every job and return a Report. Never prints."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from lossctl import activity
from lossctl.activity import CheckStarted
from lossctl.budget import seconds_text
from lossctl.case import NO_OUTPUT_HINT, Case, NoDifferentiableOutput, engine_rejection
from lossctl.catalogue import CHECK_IDS
from lossctl.catalogue import info as catalogue_info
from lossctl.checks import scale_checks, select_checks
from lossctl.checks.base import Check, Skip
from lossctl.device import clock, device_name, resolve_device, seed_device
from lossctl.errors import LossctlError
from lossctl.inputs import derive_seed
from lossctl.loader import describe_exception, format_user_traceback, load_object
from lossctl.memory import LARGE_CASE_BYTES, CaseMemory, tensor_bytes
from lossctl.report import RUN, SETUP, VERIFIED, CaseResult, CheckResult, Environment, Outcome, Report, Status
from lossctl.selection import select_tasks
from lossctl.settings import DEFAULT_BUDGET_S, allows_unverified, case_budget
from lossctl.spec import CasePoint, Spec, sweep, with_default_args
from lossctl.suite import Job
from lossctl.target import Target, classify
from lossctl.threads import case_threads, planned_threads
from lossctl.torch_state import isolated_state, state_note
from lossctl.watchdog import CaseTimeout, CaseWatch, deadline

OnResult = Callable[[str, CheckResult], None]
"""Called with the case id after each check, for progress display."""
OnStart = Callable[[CheckStarted], None]
"""Called as each check starts, with the case, the check and the case's budget (for the live line;
a worker tells its parent, so a timeout can name the check it cut short)."""


@dataclass(frozen=True)
class RunOptions:
    device: str = "auto"
    seed: int | None = None
    """Overrides every spec's seed when given."""
    checks: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    base_checks: tuple[str, ...] | None = None
    """The project's default set of checks (config `checks:`); None: each check's own default."""
    jobs: int = 0
    """Worker processes; 0 runs every case in this process (no crash isolation; the timeout
    interrupts Python code via SIGALRM where this is the main thread)."""
    shard: tuple[int, int] | None = None
    """(K, N): run only the K-th of N deterministic slices of the cases (1-based)."""
    timeout: float = 300.0
    """Seconds a case may take in a worker before it is killed and reported."""
    budget: float | None = None
    """--budget: seconds each case's checks may take (None: the spec's `budget:`, else config_budget)."""
    config_budget: float = DEFAULT_BUDGET_S
    allow_unverified_gradients: bool | None = None
    """Accept a case whose selected gradient checks all skipped (None: the spec, else the config, decides)."""
    config_allows_unverified: bool = False
    world_size: tuple[int, ...] | None = None
    """Overrides every distributed spec's world_size when given (--world-size)."""
    threads: int | None = None
    """Intra-op threads per case; None: 1 for a small case, the worker's share for a large one."""
    keyword: str | None = None
    """-k: only cases whose id matches this expression."""
    only: frozenset[str] | None = None
    """--lf: only these case keys (selection.case_key)."""
    exitfirst: bool = False
    """-x: stop after the first case with a failed or raised check."""
    isolate_single: bool = True
    """False: a run of one case stays in this process (no worker start-up)."""


def run_checks(
    jobs: Sequence[Job], options: RunOptions, on_result: OnResult | None = None, on_start: OnStart | None = None
) -> Report:
    """Check every case; user mistakes inside a job become ERROR rows, fatal misuse raises
    LossctlError (unknown check id, unavailable device). `on_result` hears of each finished check
    (with workers: when its case finishes), `on_start` of each check as it starts."""
    if any(job.spec.world_size is not None for job in jobs):  # ranks in processes: lossctl.distributed
        from functools import partial

        from lossctl.distributed.runner import run_with_distributed

        return run_with_distributed(jobs, options, on_result, partial(run_checks, on_start=on_start))
    device = resolve_device(options.device)
    select_checks(options.checks, options.skip)  # unknown ids are a usage error before anything runs
    tasks = select_tasks(shard_tasks(plan_tasks(jobs), options.shard), keyword=options.keyword, only=options.only)
    isolated = options.jobs > 0 and (len(tasks) > 1 or options.isolate_single)
    share = torch.get_num_threads() // max(1, min(options.jobs, len(tasks))) if isolated else torch.get_num_threads()
    threads = planned_threads(options.threads, [(t.job.spec, t.point) for t in tasks], max(1, share))
    if isolated:
        from lossctl.parallel import run_isolated

        stopped: list[CaseResult] = []

        def on_case(case: CaseResult) -> None:
            for result in case.checks:
                if on_result:
                    on_result(case.case, result)
            if options.exitfirst and case.status.is_problem and not stopped:
                stopped.append(case)
                raise _ExitFirst  # the pool stops as on Ctrl-C: cleanly, keeping what finished

        outcome = run_isolated(
            tasks,
            run_task,
            options,
            options.jobs,
            options.timeout,
            on_case,
            on_crash=crash_result,
            prepare=warm_up_for,
            on_start=on_start,
        )
        interrupted = outcome.interrupted and not stopped
        return Report(tuple(outcome.results), environment(device, threads), interrupted=interrupted)
    warm_up(device)
    cases: list[CaseResult] = []
    try:
        for task in tasks:
            checks = select_checks(options.checks, options.skip, task.job.spec.checks, options.base_checks)
            watch = CaseWatch(time.monotonic(), activity.current())
            starts, results = _watching_starts(watch, on_start), _watching_results(watch, on_result)
            try:
                with (
                    deadline(options.timeout, watch.timeout_message),
                    case_threads(options.threads, task.job.spec, task.point),
                ):
                    done = _run_job(task.job, checks, device, options, results, (task.point,), starts)
            except CaseTimeout as timeout:
                done = [_timed_out(task, options, watch, timeout, on_result)]
            cases.extend(done)
            if options.exitfirst and any(case.status.is_problem for case in done):
                break
    except KeyboardInterrupt:
        return Report(cases=tuple(cases), environment=environment(device, threads), interrupted=True)
    return Report(cases=tuple(cases), environment=environment(device, threads))


class _ExitFirst(KeyboardInterrupt):
    """-x's stop, raised from the worker pool's callback: the pool handles it like Ctrl-C."""


def crash_result(
    task: Task,
    options: RunOptions,
    message: str,
    duration_ms: float,
    finished: Sequence[CheckResult] = (),
    check: str | None = None,
) -> CaseResult:
    """The ERROR row for a case whose worker died, hung or failed: what happened, where. A case cut
    short in `check` keeps the rows of the checks that had `finished`, and its row is that check's."""
    spec = task.job.spec
    points = sweep(spec)
    point = points[task.point] if task.point < len(points) else None
    case_id = f"{spec.name}[{point.label()}]" if point is not None and point.swept else spec.name
    result = CheckResult(check=check or RUN, status=Status.ERROR, detail=message, duration_ms=duration_ms)
    return CaseResult(
        case=case_id,
        spec=spec.name,
        function=spec.function,
        source=spec.source,
        dims=dict(point.dims) if point is not None else {},
        seed=spec.seed if options.seed is None else options.seed,
        device=options.device,
        checks=(*finished, result),
        notes=task.job.notes,
    )


def _watching_starts(watch: CaseWatch, on_start: OnStart | None) -> OnStart:
    """`on_start`, telling `watch` first which check the case is in."""

    def started(step: CheckStarted) -> None:
        watch.start(step)
        if on_start:
            on_start(step)

    return started


def _watching_results(watch: CaseWatch, on_result: OnResult | None) -> OnResult:
    def finished(case_id: str, result: CheckResult) -> None:
        watch.done(result)
        if on_result:
            on_result(case_id, result)

    return finished


def _timed_out(
    task: Task, options: RunOptions, watch: CaseWatch, timeout: CaseTimeout, on_result: OnResult | None
) -> CaseResult:
    """A case the in-process deadline cut short: the rows of its finished checks, and the timeout's."""
    ms = watch.unaccounted_ms(timeout.at)
    case = crash_result(task, options, str(timeout), ms, watch.finished, watch.check)
    if on_result:
        on_result(case.case, case.checks[-1])
    return case


def warm_up(device: torch.device) -> None:
    """Pay autograd's one-time start-up (lazy imports, thread pools) before anything is timed."""
    with torch.enable_grad():  # the Python API may be called under torch.no_grad()
        x = torch.ones(2, device=device, dtype=torch.float64, requires_grad=True)
        y = x * x
        torch.autograd.grad([y], [x], [torch.ones_like(y)])  # explicit grad_outputs import more


def warm_up_for(options: RunOptions) -> None:
    """What a worker process runs once before its first case."""
    warm_up(resolve_device(options.device))


def environment(device: torch.device, threads: int | None = None) -> Environment:
    """Where a run happens; `threads`: the intra-op threads its cases ran with (default: torch's
    current count)."""
    return Environment(
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        device=str(device),
        device_name=device_name(device),
        threads=torch.get_num_threads() if threads is None else threads,
    )


@dataclass(frozen=True)
class Task:
    """One case to run: a job and the index of a point of its dims sweep."""

    job: Job
    point: int


def plan_tasks(jobs: Sequence[Job]) -> list[Task]:
    """Every case of every job, in order (what --shard splits and workers run)."""
    return [Task(job, index) for job in jobs for index in range(len(sweep(job.spec)))]


def shard_tasks(tasks: list[Task], shard: tuple[int, int] | None) -> list[Task]:
    """The K-th of N slices, round robin over the planned order: every case lands in exactly one
    shard, and shard sizes differ by at most one."""
    if shard is None:
        return tasks
    k, n = shard
    return [task for index, task in enumerate(tasks) if index % n == k - 1]


@dataclass(frozen=True)
class SetupFailure:
    """A case that could not be built: the Function did not load, the arguments did not bind, or
    the user's constructor raised."""

    case_id: str
    dims: dict[str, int]
    message: str
    hint: str | None
    details: str | None


def build_cases(
    job: Job,
    device: torch.device,
    seed: int,
    notes: list[str] | None = None,
    points: Sequence[int] | None = None,
) -> Iterator[Case | SetupFailure]:
    """Every case of a job's sweep (or the points at these indices), or what stopped it from
    being built. Appends notes (default inputs) to `notes` when given. A spec-level failure (the
    Function does not load) is yielded once, for the first requested point only."""
    spec = job.spec
    try:
        obj = job.target if job.target is not None else load_object(spec.function, base_dir=spec.base_dir)[0]
        target = classify(obj, spec.function)
        if spec.reference:  # a reference that does not load is a spec mistake, like the Function
            try:
                load_object(spec.reference, base_dir=spec.base_dir)
            except LossctlError as error:
                raise LossctlError(f"reference: {error.message}", hint=error.hint, details=error.details) from None
        if not spec.args_given:
            spec = with_default_args(spec, target.required_parameters())
            if notes is not None:
                notes.append(_default_inputs_note(job, spec))
    except LossctlError as error:
        if points is None or 0 in points:
            yield SetupFailure(spec.name, {}, _in_spec(spec, error.message), error.hint, error.details)
        return
    for index, point in enumerate(sweep(spec)):
        if points is not None and index not in points:
            continue
        case_id = f"{spec.name}[{point.label()}]" if point.swept else spec.name
        item: Case | SetupFailure
        try:  # not around the yield: closing this generator throws GeneratorExit there
            item = _build_case(case_id, spec, point, target, device, seed)
        except LossctlError as error:
            item = SetupFailure(case_id, dict(point.dims), _in_spec(spec, error.message), error.hint, error.details)
        except (Exception, SystemExit, GeneratorExit) as error:  # the user's constructor or module raised
            message = f"building the inputs or the module raised {describe_exception(error)}"
            item = SetupFailure(case_id, dict(point.dims), message, None, format_user_traceback(error))
        yield item


def run_task(
    task: Task, options: RunOptions, on_result: OnResult | None = None, on_start: OnStart | None = None
) -> list[CaseResult]:
    """Run one case (one point of one job's sweep) in this process. What a worker runs."""
    device = resolve_device(options.device)
    checks = select_checks(options.checks, options.skip, task.job.spec.checks, options.base_checks)
    with case_threads(options.threads, task.job.spec, task.point):
        return _run_job(task.job, checks, device, options, on_result, points=(task.point,), on_start=on_start)


def _run_job(
    job: Job,
    checks: tuple[Check, ...],
    device: torch.device,
    options: RunOptions,
    on_result: OnResult | None,
    points: Sequence[int] | None = None,
    on_start: OnStart | None = None,
) -> list[CaseResult]:
    seed = job.spec.seed if options.seed is None else options.seed
    at_scale = scale_checks(options.checks, options.skip, job.spec.checks, options.base_checks)
    notes = list(job.notes)
    results = []
    allow = allows_unverified(
        options.allow_unverified_gradients,
        job.spec.allow_unverified_gradients,
        options.config_allows_unverified,
    )
    with isolated_state() as changed:  # around building too: a Module's constructor is user code
        for item in build_cases(job, device, seed, notes, points):
            if isinstance(item, SetupFailure):
                results.append(_setup_failed(job.spec, seed, device, item, notes, on_result))
            else:
                item.budget_s = case_budget(options.budget, job.spec.budget, options.config_budget)
                item.started = time.monotonic()  # the budget is for the checks, not for building inputs
                results.append(_run_case(item, checks, tuple(notes), on_result, allow, at_scale, on_start))
    note = state_note(changed)
    return [replace(result, notes=(*result.notes, note)) for result in results] if note else results


def _default_inputs_note(job: Job, spec: Spec) -> str:
    why = f"no spec under {job.searched} names it" if job.searched else f"no `args:` in {spec.source}"
    shape = ", ".join(f"{k}={v[0]}" for k, v in spec.dims.items())
    return (
        f"{spec.name}: default inputs ({why}): {', '.join(spec.args)} each a float64 [{shape}] "
        "tensor; write a spec to choose shapes, dtypes and targets"
    )


def _in_spec(spec: Spec, message: str) -> str:
    """Prefix a message about a spec's arguments with the file it came from."""
    if spec.source and message.startswith("args"):
        line = spec.key_lines.get(message.split(":", 1)[0], spec.key_lines.get("args", spec.line))
        where = f"{spec.source}:{line}" if line else spec.source
        return f"{where}: {message}"
    return message


def _build_case(case_id: str, spec: Spec, point: CasePoint, target: Target, device: torch.device, seed: int) -> Case:
    case = Case.build(case_id, spec, point, target, device, seed)
    case.function()  # build a Module now, so a failing constructor is a setup error
    return case


def _setup_failed(
    spec: Spec,
    seed: int,
    device: torch.device,
    failure: SetupFailure,
    notes: list[str],
    on_result: OnResult | None,
) -> CaseResult:
    result = CheckResult(
        check=SETUP,
        status=Status.ERROR,
        detail=failure.message,
        duration_ms=0.0,
        hint=failure.hint,
        traceback=failure.details,
    )
    if on_result:
        on_result(failure.case_id, result)
    return CaseResult(
        case=failure.case_id,
        spec=spec.name,
        function=spec.function,
        source=spec.source,
        dims=failure.dims,
        seed=seed,
        device=str(device),
        checks=(result,),
        notes=tuple(notes),
    )


def _run_case(
    case: Case,
    checks: tuple[Check, ...],
    notes: tuple[str, ...],
    on_result: OnResult | None,
    allow_unverified: bool = False,
    at_scale: tuple[Check, ...] = (),
    on_start: OnStart | None = None,
) -> CaseResult:
    results: list[CheckResult] = []
    memory = CaseMemory(case.device, large=inputs_bytes(case) >= LARGE_CASE_BYTES)
    forward_backward_mb = None

    def record(result: CheckResult) -> None:
        results.append(result)
        if on_result:
            on_result(case.id, result)

    _begin(case, "forward", on_start)
    probe = _run_measured(memory, case, "forward", _probe_forward)
    if probe.status is Status.ERROR:
        record(replace(probe, detail=f"forward raised {probe.detail}"))
        for check in checks:
            if check.id != "forward":
                record(_skipped(check.id, "forward raised (see the forward row)"))
    else:
        rejected: dict[str, str] = {}
        selected, index, planned = list(checks), 0, False
        order = {check_id: position for position, check_id in enumerate(CHECK_IDS)}
        first_scale = min((order[c.id] for c in at_scale), default=len(order))
        while index < len(selected) or (not planned and at_scale):
            check = selected[index] if index < len(selected) else None
            if check is not None:
                _begin(case, check.id, on_start)
            # Planning measures a forward+backward: only at the first check that needs the plan
            # (priced, or where an at-scale check would run), so a backward that raises or hangs is
            # first met by the cheap checks (backward, raw_backward) that name it best, and a time
            # limit hit while measuring counts in the check that needed the plan.
            if not planned and (check is None or _priced(check.id) or order.get(check.id, -1) > first_scale):
                planned = True
                selected[index:] = with_scale_checks(case, tuple(selected[index:]), at_scale)
                forward_backward_mb = forward_backward_peak(case, memory)
                plan_case(case, selected[index:])
                continue  # an at-scale check may sort before this one
            assert check is not None  # planned: the loop only runs on while checks remain
            over = over_budget(case, check.id)
            result = _skipped(check.id, over) if over else _run_measured(memory, case, check.id, check.run, rejected)
            record(with_allotment(case, result))
            index += 1
        if not planned:  # only cheap checks ran: the memory unit is still worth its one pass
            forward_backward_mb = forward_backward_peak(case, memory)
        if (unverified := unverified_gradients(case, results, allow_unverified)) is not None:
            record(unverified)
    file, line = case.target.source_location()
    return CaseResult(
        resources=case_resources(case, results, memory, forward_backward_mb),
        case=case.id,
        spec=case.spec.name,
        function=case.spec.function,
        source=case.spec.source,
        dims=dict(case.point.dims),
        seed=case.seed,
        device=str(case.device),
        checks=tuple(results),
        notes=notes,
        source_file=file,
        source_line=line,
    )


def _begin(case: Case, check_id: str, on_start: OnStart | None) -> None:
    """A check starts: the Function's calls are counted from here, and the watcher is told."""
    now = time.monotonic()
    activity.begin_check(now)
    if on_start:
        on_start(CheckStarted(case.id, check_id, case.budget_s, case.started, now))


def _priced(check_id: str) -> bool:
    """A check the budget plan gives a share (its catalogue entry has a cost)."""
    return check_id in CHECK_IDS and catalogue_info(check_id).cost is not None


def with_scale_checks(case: Case, checks: tuple[Check, ...], at_scale: tuple[Check, ...]) -> tuple[Check, ...]:
    """`checks`, plus the `at_scale` ones (in catalogue order) when gradcheck's full Jacobian would
    not fit the case's budget (a large case, or a slow one), so gradcheck's fast mode (one random
    direction) and gradient_scaled's few directions are all that would verify its gradient."""
    if not at_scale or not case.diff_indices:
        return checks
    try:
        # large, or slow: at a few hundred elements, a forward that takes 0.2 s puts gradcheck's
        # full Jacobian out of reach just the same (its fast mode dilutes a one-row error)
        large = case.slow_jacobian_over_budget()
    except Exception:  # forward or backward raises: the checks say so in their own rows
        return checks
    if not large:
        return checks
    order = {check_id: index for index, check_id in enumerate(CHECK_IDS)}
    return tuple(sorted((*checks, *at_scale), key=lambda c: order.get(c.id, len(order))))


def case_resources(
    case: Case,
    results: Sequence[CheckResult],
    memory: CaseMemory | None = None,
    forward_backward_mb: float | None = None,
) -> dict[str, float]:
    """The case's budget, its measured forward+backward (when a check asked for it), its checks'
    time and its memory (lossctl.memory: the case's own peak where the platform allows)."""
    resources = {"budget_s": case.budget_s, "checks_s": sum(r.duration_ms for r in results) / 1e3}
    if case.measured_cost_s() is not None:
        resources["forward_backward_s"] = case.measured_cost_s()
    memory = memory or CaseMemory(case.device)
    resources.update(memory.resources(inputs_bytes(case), forward_backward_mb))
    if case.plan is not None:
        resources["planned_passes"] = case.plan.passes
        resources["planned_s"] = case.plan.seconds
    return resources


def inputs_bytes(case: Case) -> int:
    """Bytes of the case's tensor inputs (positional and keyword): the unit "input copies" count in."""
    return tensor_bytes(case.values) + tensor_bytes(case.kwargs)


def forward_backward_peak(case: Case, memory: CaseMemory) -> float | None:
    """One forward+backward's own peak memory (its inputs' copies made before, not counted), MB:
    measured once, for a case whose inputs are large enough for the figure to mean something."""
    if not case.diff_indices or inputs_bytes(case) < LARGE_CASE_BYTES:
        return None
    values = case.fresh()

    def run() -> None:
        with isolated_state("memory"), torch.enable_grad():
            case.vjp(values, "memory")

    return memory.forward_backward_peak(run)


def _run_measured(
    memory: CaseMemory,
    case: Case,
    check_id: str,
    run: Callable[[Case], Outcome],
    rejected: dict[str, str] | None = None,
) -> CheckResult:
    """_run_one, with the check's peak memory above the case's baseline (CheckResult.peak_mb)."""
    with memory.measure() as peak:
        result = _run_one(case, check_id, run, rejected)
    return replace(result, peak_mb=peak.mb)


def plan_case(case: Case, checks: Sequence[Check]) -> None:
    """Make the case's budget plan (lossctl.budget) once, before its first costly check: the cost
    of one forward+backward is measured, and every priced check gets its share."""
    if not case.diff_indices:
        return
    try:
        case.make_plan([check.id for check in checks])
    except Exception:  # forward or backward raises: the checks report it in their own rows
        return


def over_budget(case: Case, check_id: str) -> str | None:
    """Why a check is skipped before it starts: the case's budget plan gives it nothing (not even
    its smallest method fits its share), or the checks before it overran their shares and what is
    left of the budget no longer holds its smallest method. None: it runs."""
    if case.plan is None:
        return None
    if (reason := case.plan.skip_reason(check_id)) is not None:
        return reason
    allotment = case.allotment(check_id)
    if allotment is None:
        return None
    need = allotment.minimum * case.plan.unit_s
    left = case.remaining_s()
    if need <= left:
        return None
    return (
        f"would need ≥ {allotment.minimum:g}× forward+backward ≈ {seconds_text(need)}, over the "
        f"{seconds_text(max(left, 0.0))} left of the {case.budget_s:g} s budget (the checks before it took longer "
        "than the plan gave them); raise --budget"
    )


def with_allotment(case: Case, result: CheckResult) -> CheckResult:
    """The result with its share of the budget plan in `data["planned"]` (JSON's view of the plan)."""
    allotment = case.allotment(result.check)
    if allotment is None:
        return result
    return replace(result, data={**result.data, "planned": allotment.to_dict()})


ALLOW_UNVERIFIED_HINT = (
    "give the spec a `reference:` (a plain implementation) to compare against in your dtype, or accept "
    "it with --allow-unverified-gradients (spec or config: allow_unverified_gradients: true)"
)


def unverified_gradients(case: Case, results: Sequence[CheckResult], allow: bool) -> CheckResult | None:
    """The VERIFIED row when gradient checks ran but every one skipped (a Function that runs only in
    float32/bfloat16 gets no gradcheck): never an OK without a verified gradient value. FAILED
    unless the user accepts it, then SKIPPED with the same words. None when nothing is to say."""
    if not case.diff_indices:
        return None
    gradient_checks = [r for r in results if r.check in CHECK_IDS and catalogue_info(r.check).verifies_gradient]
    # A check that passed without comparing a gradient value (edge_sizes without float64) verified nothing.
    if not gradient_checks or any(
        r.status is not Status.SKIPPED and r.data.get("gradient_verified", True) for r in gradient_checks
    ):
        return None
    skipped = [r for r in gradient_checks if r.status is Status.SKIPPED]
    compared = [r.check for r in gradient_checks if r.status is not Status.SKIPPED]
    parts = []
    if skipped:
        parts.append(f"{', '.join(r.check for r in skipped)} skipped ({skipped[0].detail})")
    if compared:  # e.g. low_precision against a float32-only Function's own float32 run
        parts.append(f"{', '.join(compared)} compared no gradient value with an independent truth")
    detail = f"no gradient value was verified: {'; '.join(parts)}"
    if allow:
        return _result(VERIFIED, Outcome.skipped(f"{detail}; accepted (allow_unverified_gradients)"), 0.0, None)
    return _result(VERIFIED, Outcome.failed(detail, hint=ALLOW_UNVERIFIED_HINT), 0.0, None)


def _probe_forward(case: Case) -> Outcome:
    case.call(case.fresh())
    return Outcome.passed("forward ran")


def _skipped(check_id: str, reason: str) -> CheckResult:
    return CheckResult(check=check_id, status=Status.SKIPPED, detail=reason, duration_ms=0.0)


def _run_one(
    case: Case, check_id: str, run: Callable[[Case], Outcome], rejected: dict[str, str] | None = None
) -> CheckResult:
    """Run one check, timed and seeded. `rejected` remembers autograd's rejections of what
    backward returned, so a later check hitting the same one says "see <check>" instead of
    repeating it."""
    start = clock(case.device)
    user_traceback = None
    try:
        # Seed torch's global generator per check (gradcheck's fast mode and any randomness in
        # the user's forward draw from it), without disturbing the caller's RNG state.
        devices = [case.device.index or 0] if case.device.type == "cuda" else []
        with isolated_state(check_id), torch.random.fork_rng(devices=devices), torch.enable_grad():
            seed_device(case.device, derive_seed(case.seed, "check", check_id))
            outcome = run(case)
    except Skip as skip:
        outcome = Outcome.skipped(str(skip))
    except NoDifferentiableOutput:
        outcome = Outcome.failed(
            f"no output requires grad although {', '.join(case.diff_names)} do", hint=NO_OUTPUT_HINT
        )
    except (Exception, SystemExit, GeneratorExit) as error:  # SystemExit: the user's code called sys.exit
        rejection = engine_rejection(case, error) if isinstance(error, RuntimeError) else None
        if rejection is not None:  # autograd refused what backward returned: a finding, not a crash
            if rejected is not None and rejection in rejected:
                outcome = Outcome.skipped(f"autograd rejects what backward returns (see {rejected[rejection]})")
            else:
                outcome = Outcome.failed(rejection)
                if rejected is not None:
                    rejected[rejection] = check_id
            elapsed = (clock(case.device) - start) * 1e3
            return _result(check_id, outcome, elapsed, None)
        outcome = Outcome(Status.ERROR, describe_exception(error))
        user_traceback = format_user_traceback(error)
    elapsed = (clock(case.device) - start) * 1e3
    return _result(check_id, outcome, elapsed, user_traceback)


def _result(check_id: str, outcome: Outcome, elapsed: float, user_traceback: str | None) -> CheckResult:
    return CheckResult(
        check=check_id,
        status=outcome.status,
        detail=outcome.detail,
        duration_ms=elapsed,
        hint=outcome.hint,
        data=dict(outcome.data),
        explain=outcome.explain,
        traceback=user_traceback,
    )

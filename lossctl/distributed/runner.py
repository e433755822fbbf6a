"""Run distributed specs: one case per (dims point, world size), each checked on real ranks
against the single-process truth, and the single-process battery at W=1. Never prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lossctl.distributed import CHECK_IDS, is_distributed
from lossctl.distributed.checks import (
    RankRun,
    Reference,
    check_determinism,
    check_finite_differences,
    check_forward,
    check_ranks,
    check_reference_gradient,
    check_world_sizes,
)
from lossctl.distributed.pool import RankFault, RankPool
from lossctl.errors import DeviceError, SpecError
from lossctl.report import RUN, SETUP, CaseResult, CheckResult, Outcome, Report, Status
from lossctl.spec import Spec, TensorArg, sweep
from lossctl.suite import Job

PROBES_PER_SHARD = 2
"""Finite-difference directions per rank's shard of each argument (and per unsharded argument)."""

OnResult = Callable[[str, CheckResult], None]
RunPlain = Callable[..., Report]


def run_with_distributed(jobs: Sequence[Job], options: Any, on_result: OnResult | None, run_plain: RunPlain) -> Report:
    """Run the single-process jobs with `run_plain` (lossctl.runner.run_checks), then the
    distributed ones; `options` is a runner.RunOptions. The dist_* ids in --checks/--skip pick
    distributed checks; the rest go to the battery."""
    plain_jobs = [job for job in jobs if not is_distributed(job.spec)]
    distributed = [job for job in jobs if is_distributed(job.spec)]
    world_override = getattr(options, "world_size", None)
    if world_override:
        distributed = [replace(job, spec=replace(job.spec, world_size=tuple(world_override))) for job in distributed]
    only = tuple(c for c in (options.checks or ()) if c in CHECK_IDS)
    chosen = only or (CHECK_IDS if not options.checks else ())
    chosen = tuple(c for c in chosen if c not in options.skip)
    battery_checks = tuple(c for c in (options.checks or ()) if c not in CHECK_IDS)
    plain_options = replace(
        options,
        checks=battery_checks or None,
        skip=tuple(c for c in options.skip if c not in CHECK_IDS),
    )
    run_battery = not (options.checks and not battery_checks)
    from lossctl.checks import select_checks

    select_checks(plain_options.checks, plain_options.skip)  # unknown ids: a usage error before anything runs
    runner = DistributedRunner(options, plain_options if run_battery else None, chosen, on_result)
    planned = runner.plan(distributed)  # a device or a shard that cannot work: exit 2 before anything runs
    cases: list[CaseResult] = []
    environment = None
    interrupted = False
    if plain_jobs:
        report = run_plain(plain_jobs, plain_options, on_result)
        cases.extend(report.cases)
        environment = report.environment
        interrupted = report.interrupted
    if planned and not interrupted:
        try:
            for job, index in planned:
                runner.run_point(job, index)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            runner.close()
        cases.extend(runner.cases)
    if environment is None:
        from lossctl.device import resolve_device
        from lossctl.runner import environment as describe

        environment = describe(resolve_device(options.device))
    return Report(cases=tuple(cases), environment=environment, interrupted=interrupted)


@dataclass
class _Stage:
    """Timing of one request to the ranks, to give each check row its cost."""

    started: float = 0.0

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.started = (now - self.started) * 1e3, now
        return elapsed


class DistributedRunner:
    """Owns the rank pool (started at the first case, replaced after a fault) and the results."""

    def __init__(self, options: Any, battery_options: Any | None, checks: tuple[str, ...], on_result: OnResult | None):
        self.options = options
        self.battery_options = battery_options
        self.checks = checks
        self.on_result = on_result
        self.pool: RankPool | None = None
        self.pool_size = 1
        self.cases: list[CaseResult] = []
        self.device_type = "cpu"
        self.unloadable: set[int] = set()
        """Jobs whose Function did not load or bind (by id)."""

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def plan(self, jobs: Sequence[Job]) -> list[tuple[Job, int]]:
        """The (job, dims point) pairs to run, after refusing what cannot run here."""
        from lossctl.device import resolve_device

        if not jobs:
            return []

        device = resolve_device(self.options.device)
        self.device_type = device.type
        if device.type not in ("cpu", "cuda"):
            raise DeviceError(f"--device {self.options.device}: distributed specs run on cpu (gloo) or cuda (nccl)")
        self.pool_size = max(max(job.spec.world_size or (1,)) for job in jobs)
        if device.type == "cuda":
            import torch

            count = torch.cuda.device_count()
            if count < self.pool_size:
                raise DeviceError(
                    f"--device cuda: world_size {self.pool_size} needs one GPU per rank, and "
                    f"{count} {'is' if count == 1 else 'are'} visible",
                    hint="lower world_size (or --world-size), or run on CPU with --device cpu (gloo)",
                )
        for job in jobs:
            _check_shards(job.spec)
        planned = [(job, index) for job in jobs for index in range(len(sweep(job.spec)))]
        if self.options.shard is not None:
            k, n = self.options.shard
            planned = [item for i, item in enumerate(planned) if i % n == k - 1]
        return planned

    # ------------------------------------------------------------------ one point of a sweep

    def run_point(self, job: Job, index: int) -> None:
        spec = job.spec
        seed = spec.seed if self.options.seed is None else self.options.seed
        sizes = spec.world_size or (1,)
        if id(job) in self.unloadable:
            return  # the spec's setup error is reported once, as the runner does
        reference, why_not = self.single_process(job, index, seed)
        if id(job) in self.unloadable:
            return
        if not self.checks:
            return  # --checks named no distributed check: the battery at W=1 was all
        first: RankRun | None = None
        for world in sizes:
            if world == 1 and self.battery_options is not None:
                continue  # the battery's case at W=1 stands for it
            run = self.run_world(job, index, seed, world, reference, why_not, first)
            if first is None and run is not None:
                first = run

    def single_process(self, job: Job, index: int, seed: int) -> tuple[Reference | None, str]:
        """The reference at W=1 (and the battery there): (reference, why it is missing)."""
        spec = job.spec
        point = sweep(spec)[index]
        case_id = _case_id(spec, point, 1)
        started = time.perf_counter()
        try:
            pool = self.ensure_pool()  # starting the ranks is not the case's time
            started = time.perf_counter()
            deadline = time.monotonic() + self.options.timeout
            pool.form_group(1, deadline)
            doing = "building the inputs (W=1)"
            pool.ask("case", [(spec, dict(point.dims), seed, self.device_type)], doing, deadline)
            reply = pool.ask("reference", [None], "computing the single-process reference (W=1)", deadline)[0]
            reference = Reference(outputs=reply["outputs"], grads=reply["grads"])
            if self.battery_options is not None:
                results = pool.ask(
                    "battery",
                    [(job, index, self.battery_options)],
                    "running the single-process battery (W=1)",
                    deadline,
                )[0]
                for case in results:
                    self.record_case(replace(case, case=case_id), announce=True)
            return reference, ""
        except RankFault as fault:
            if fault.setup:  # the Function does not load or bind; the 1-rank group answered: keep it
                self.unloadable.add(id(job))
                self.record_error(spec, point, seed, spec.name, fault, started)
                return None, ""
            self.close()
            self.record_error(spec, point, seed, case_id, fault, started)
            return None, f"the single-process reference did not run (see {case_id})"

    def run_world(
        self,
        job: Job,
        index: int,
        seed: int,
        world: int,
        reference: Reference | None,
        why_not: str,
        first: RankRun | None,
    ) -> RankRun | None:
        spec = job.spec
        point = sweep(spec)[index]
        case_id = _case_id(spec, point, world)
        started = time.perf_counter()
        try:
            pool = self.ensure_pool()
            started = time.perf_counter()
            deadline = time.monotonic() + self.options.timeout
            stage = _Stage(started)
            pool.form_group(world, deadline)
            metas = pool.ask(
                "case", [(spec, dict(point.dims), seed, self.device_type)] * world, "building its shard", deadline
            )
            setup_ms = stage.lap()
            names, shards = metas[0]["diff_names"], metas[0]["shards"]
            timings: dict[str, float] = {}
            run = RankRun.from_replies(pool.ask("vjp", ["random"] * world, "running forward and backward", deadline))
            timings["dist_ranks"] = stage.lap() + setup_ms
            again = None
            if "dist_determinism" in self.checks:
                doing = "running forward and backward again (determinism)"
                again = RankRun.from_replies(pool.ask("vjp", ["random"] * world, doing, deadline))
                timings["dist_determinism"] = stage.lap()
            conventional = RankRun.from_replies(
                pool.ask("vjp", ["convention"] * world, "running forward and backward (convention)", deadline)
            )
            timings["dist_forward"] = timings["dist_reference"] = timings["dist_world_sizes"] = stage.lap() / 3
            probes = None
            if "dist_gradient" in self.checks and names:
                doing = "running forward at perturbed global inputs (finite differences)"
                probes = pool.ask("probe", [PROBES_PER_SHARD] * world, doing, deadline)
                timings["dist_gradient"] = stage.lap()
        except RankFault as fault:
            self.close()
            self.record_error(spec, point, seed, case_id, fault, started)
            return None
        tol = spec.tolerance
        outcomes: dict[str, Outcome] = {}
        if "dist_forward" in self.checks:
            outcomes["dist_forward"] = (
                check_forward(conventional, reference, tol) if reference else Outcome.skipped(why_not)
            )
        if "dist_gradient" in self.checks:
            outcomes["dist_gradient"] = (
                check_finite_differences(probes, spec.tolerance.eps, tol)
                if probes
                else Outcome.skipped("no input requires grad")
            )
        if "dist_reference" in self.checks:
            outcomes["dist_reference"] = (
                check_reference_gradient(conventional, reference, names, shards, tol)
                if reference
                else Outcome.skipped(why_not)
            )
        if "dist_ranks" in self.checks:
            outcomes["dist_ranks"] = check_ranks(run, names)
        if "dist_determinism" in self.checks and again is not None:
            outcomes["dist_determinism"] = check_determinism(run, again, names, tol.nondet_tol)
        if "dist_world_sizes" in self.checks:
            outcomes["dist_world_sizes"] = (
                check_world_sizes(conventional, first, shards, names, tol)
                if first is not None
                else Outcome.skipped(
                    "the first world size of the sweep (later ones are compared with it)"
                    if len(spec.world_size or ()) > 1
                    else "one world size (give `world_size: [2, 4]` to compare sizes)"
                )
            )
        results = []
        for check_id in CHECK_IDS:
            if check_id in outcomes:
                outcome = outcomes[check_id]
                result = CheckResult(
                    check=check_id,
                    status=outcome.status,
                    detail=outcome.detail,
                    duration_ms=timings.get(check_id, 0.0),
                    hint=outcome.hint,
                    data=dict(outcome.data),
                )
                results.append(result)
                if self.on_result:
                    self.on_result(case_id, result)
        self.record_case(self.case_result(spec, point, seed, case_id, tuple(results)), announce=False)
        return conventional

    # ------------------------------------------------------------------ plumbing

    def ensure_pool(self) -> RankPool:
        if self.pool is None:
            backend = "nccl" if self.device_type == "cuda" else "gloo"
            self.pool = RankPool(self.pool_size, self.options.timeout, backend=backend)
        return self.pool

    def case_result(
        self, spec: Spec, point: Any, seed: int, case_id: str, checks: tuple[CheckResult, ...]
    ) -> CaseResult:
        return CaseResult(
            case=case_id,
            spec=spec.name,
            function=spec.function,
            source=spec.source,
            dims=dict(point.dims),
            seed=seed,
            device=self.device_type,
            checks=checks,
        )

    def record_case(self, case: CaseResult, *, announce: bool) -> None:
        self.cases.append(case)
        if announce and self.on_result:
            for result in case.checks:
                self.on_result(case.case, result)

    def record_error(self, spec: Spec, point: Any, seed: int, case_id: str, fault: RankFault, started: float) -> None:
        """One ERROR row: `setup` when the spec could not be loaded or bound, else `run`."""
        result = CheckResult(
            check=SETUP if fault.setup else RUN,
            status=Status.ERROR,
            detail=fault.message,
            duration_ms=(time.perf_counter() - started) * 1e3,
            hint=fault.hint,
            traceback=fault.traceback,
        )
        if self.on_result:
            self.on_result(case_id, result)
        self.cases.append(self.case_result(spec, point, seed, case_id, (result,)))


def _case_id(spec: Spec, point: Any, world: int) -> str:
    labels = [point.label()] if point.swept else []
    return f"{spec.name}[{','.join([*labels, f'W={world}'])}]"


def _check_shards(spec: Spec) -> None:
    """Sharded dims must divide by every world size (also under --world-size)."""
    for name, arg in spec.args.items():
        if not isinstance(arg, TensorArg) or arg.shard is None:
            continue
        size = arg.shape[arg.shard]
        for value in spec.dims[size] if isinstance(size, str) else (size,):
            for world in spec.world_size or ():
                if value % world:
                    raise SpecError(
                        f"args.{name}.shard: dim {arg.shard} has size {value}, which does not divide by "
                        f"world_size {world}",
                        source=spec.source,
                        hint="choose sizes that are multiples of every world size",
                    )

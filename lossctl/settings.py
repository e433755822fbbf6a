"""One settings resolution for every front end: lossctl's defaults < project config < spec < flags.

`lossctl check`, `lossctl bench`, the pytest plugin and the Python API (lossctl.check,
lossctl.assert_gradients) all call `resolve_settings`, so a `device:`, `checks:`, `skip:`,
`tolerance:`, `budget:` or `allow_unverified_gradients:` in lossctl.yaml means the same everywhere. The spec
level is applied where specs are read: its `tolerance:` over the config's (spec loading takes
`Settings.tolerance` as defaults), its `checks:` over the config's set (`select_checks`) and its
`budget:` between the config's and --budget (`case_budget`, where each case is built).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lossctl.config import ProjectConfig, load_config
from lossctl.errors import UsageError
from lossctl.flags import validate_budget, validate_device, validate_seed, validate_selection, validate_timeout

DEFAULT_DEVICE = "auto"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_JOBS = "1"
DEFAULT_BUDGET_S = 60.0
"""Seconds a case's checks may take together unless --budget, a spec or the config says otherwise."""


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides its targets, resolved."""

    device: str = DEFAULT_DEVICE
    seed: int | None = None
    checks: tuple[str, ...] | None = None
    """--checks: exactly these (None: the project's set as each spec adjusts it)."""
    skip: tuple[str, ...] = ()
    base_checks: tuple[str, ...] | None = None
    """The project's default set of checks (config `checks:`); None: each check's own default."""
    jobs: int = 1
    timeout: float = DEFAULT_TIMEOUT_S
    budget: float | None = None
    """--budget (None: not given; a spec's `budget:` then decides, else `config_budget`)."""
    config_budget: float = DEFAULT_BUDGET_S
    """The project config's `budget:`, else lossctl's default."""
    shard: tuple[int, int] | None = None
    tolerance: Mapping[str, float] = field(default_factory=dict)
    """Tolerance defaults for every spec (a spec's own `tolerance:` wins)."""
    allow_unverified_gradients: bool | None = None
    """--allow-unverified-gradients (None: not given; a spec's `allow_unverified_gradients:` then
    decides, else the config's)."""
    config_allows_unverified: bool = False
    """The project config's `allow_unverified_gradients:`."""
    world_size: tuple[int, ...] | None = None
    """--world-size: overrides every distributed spec's `world_size:`."""
    jobs_given: bool = False
    """Whether --jobs or the config chose the worker count (else one case runs in-process)."""
    project_root: Path = field(default_factory=Path.cwd)
    """The project's folder (the config's, else the current one): caches live under it."""
    spec_paths: tuple[str, ...] = ()
    """Where specs live when no target is given."""
    configs_dir: Path = field(default_factory=lambda: Path("configs"))

    def run_options(self):  # -> lossctl.runner.RunOptions (imported late: torch)
        from lossctl.runner import RunOptions

        return RunOptions(
            device=self.device,
            seed=self.seed,
            checks=self.checks,
            skip=self.skip,
            base_checks=self.base_checks,
            jobs=self.jobs,
            timeout=self.timeout,
            budget=self.budget,
            config_budget=self.config_budget,
            shard=self.shard,
            allow_unverified_gradients=self.allow_unverified_gradients,
            config_allows_unverified=self.config_allows_unverified,
            world_size=self.world_size,
            isolate_single=self.jobs_given,  # one case runs in this process unless -j/jobs asked for workers
        )


def resolve_settings(
    project: ProjectConfig | None = None,
    *,
    device: str | None = None,
    seed: int | None = None,
    checks: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    jobs: int | str | None = None,
    timeout: float | None = None,
    budget: float | None = None,
    shard: tuple[int, int] | None = None,
    allow_unverified_gradients: bool | None = None,
    world_size: tuple[int, ...] | None = None,
    config: Path | None = None,
) -> Settings:
    """Flags (None: not given) over the project config (`project`, else loaded from `config` or
    the current directory) over lossctl's defaults. Raises UsageError for flags that make no sense."""
    project = project if project is not None else load_config(explicit=config)
    # The same rules for every front end (CLI, pytest plugin, Python API), and for the config's values.
    validate_seed(seed)
    validate_device(device)
    validate_device(project.device, "the config's device")
    validate_selection(tuple(checks or ()), (*project.skip, *skip))
    validate_timeout(timeout, "--timeout")
    validate_budget(budget, "--budget")
    config_budget = project.budget or DEFAULT_BUDGET_S
    validate_budget(config_budget, "the config's budget")
    if timeout is None:
        # a worker is killed at the timeout: by default leave a budget room to be spent
        timeout = project.timeout or max(DEFAULT_TIMEOUT_S, 2 * max(budget or 0.0, config_budget))
        validate_timeout(timeout, "the config's timeout")
    return Settings(
        device=device or project.device or DEFAULT_DEVICE,
        seed=seed,
        checks=tuple(checks) if checks else None,
        skip=tuple(dict.fromkeys((*project.skip, *skip))),
        base_checks=project.checks,
        jobs=parse_jobs(jobs if jobs is not None else (project.jobs or DEFAULT_JOBS)),
        timeout=timeout,
        budget=budget,
        config_budget=config_budget,
        shard=shard,
        tolerance=dict(project.tolerance),
        allow_unverified_gradients=allow_unverified_gradients,
        config_allows_unverified=project.allow_unverified_gradients,
        world_size=world_size,
        jobs_given=jobs is not None or project.jobs is not None,
        project_root=project.root,
        spec_paths=tuple(project.spec_paths()),
        configs_dir=project.root / "configs",
    )


def allows_unverified(flag: bool | None, spec: bool | None, config: bool) -> bool:
    """Whether a case may pass with no gradient value verified: the flag over the spec over the config."""
    for layer in (flag, spec):
        if layer is not None:
            return layer
    return config


def case_budget(flag: float | None, spec: float | None, config: float) -> float:
    """Seconds one case's checks may take: --budget over the spec's `budget:` over the config's."""
    for layer in (flag, spec):
        if layer is not None:
            return layer
    return config


def parse_jobs(value: int | str) -> int:
    """A worker count: a number >= 0, or auto (one per core)."""
    import os

    if isinstance(value, int):
        if value < 0:
            raise UsageError("--jobs must be 0 or more")
        return value
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise UsageError(f"--jobs: `{value}` is not a number", hint="use a count, auto, or 0 for in-process") from None
    if count < 0:
        raise UsageError("--jobs must be 0 or more")
    return count

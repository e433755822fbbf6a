"""Results as plain frozen dataclasses that serialize to JSON; verdicts are derived, never stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"

    @property
    def is_problem(self) -> bool:
        return self in (Status.FAILED, Status.ERROR)


_SEVERITY = {Status.SKIPPED: 0, Status.PASSED: 1, Status.FAILED: 2, Status.ERROR: 3}


@dataclass(frozen=True)
class Outcome:
    """What a check concluded, before the runner adds its id and timing."""

    status: Status
    detail: str
    hint: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    """Numbers behind the detail (errors, indices, sizes), for JSON and tooling."""
    explain: str | None = None
    """Longer text shown with -v / --explain (e.g. a table of the worst elements)."""

    @classmethod
    def passed(cls, detail: str, **kw: Any) -> Outcome:
        return cls(Status.PASSED, detail, **kw)

    @classmethod
    def failed(cls, detail: str, **kw: Any) -> Outcome:
        return cls(Status.FAILED, detail, **kw)

    @classmethod
    def skipped(cls, reason: str, **kw: Any) -> Outcome:
        return cls(Status.SKIPPED, reason, **kw)


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    detail: str
    duration_ms: float
    hint: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    explain: str | None = None
    traceback: str | None = None
    """The user's traceback when their code raised (status ERROR)."""
    peak_mb: float | None = None
    """Memory above the case's baseline (its inputs built) at this check's peak, MB: resident
    memory, or CUDA's allocated memory on a GPU; None where not measured (lossctl.memory)."""


@dataclass(frozen=True)
class CaseResult:
    """One spec at one point of its dims sweep, and every check run on it."""

    case: str
    spec: str
    function: str
    source: str | None
    dims: Mapping[str, int]
    seed: int
    device: str
    checks: tuple[CheckResult, ...]
    notes: tuple[str, ...] = ()
    source_file: str | None = None
    """The file holding the Function's backward, for annotations."""
    source_line: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    """What the case cost: `budget_s` (its checks' budget), `forward_backward_s` (one measured pass,
    the unit check costs are priced in), `checks_s` (its checks' time); its memory in MB:
    `inputs_mb` (its tensor inputs), `peak_rss_mb` (the case's peak resident memory when
    `peak_rss_per_case` is 1, else the process's peak so far), `baseline_rss_mb` (at its start,
    inputs built), `peak_above_baseline_mb` and that as `peak_x_inputs`; for a large case
    `forward_backward_peak_mb` (one forward+backward's own peak) and `peak_x_forward_backward`; on
    CUDA `peak_cuda_mb` and `baseline_cuda_mb` (allocated). Empty where the case did not run."""

    @property
    def status(self) -> Status:
        if not self.checks:
            return Status.SKIPPED
        return max((c.status for c in self.checks), key=_SEVERITY.__getitem__)


@dataclass(frozen=True)
class Environment:
    """Where a run happened."""

    torch: str
    python: str
    platform: str
    device: str
    device_name: str
    threads: int


def environment_without_torch(device: str) -> Environment:
    """Where a run happened that never imported torch (every spec was invalid): torch's version
    from its package metadata."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return Environment(
        torch=torch_version,
        python=platform.python_version(),
        platform=platform.platform(),
        device=device,
        device_name=device,
        threads=int(os.environ.get("OMP_NUM_THREADS", "1") or 1),
    )


@dataclass(frozen=True)
class Report:
    cases: tuple[CaseResult, ...]
    environment: Environment
    interrupted: bool = False
    """True when Ctrl-C stopped the run: the report holds what finished."""

    def results(self) -> list[tuple[CaseResult, CheckResult]]:
        return [(case, check) for case in self.cases for check in case.checks]

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        for _, check in self.results():
            counts[check.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """True when no check failed or errored (skips do not count)."""
        return not any(check.status.is_problem for _, check in self.results())

    @property
    def anything_ran(self) -> bool:
        """False when every case stopped at setup (nothing could be loaded or bound)."""
        return any(check.check != SETUP for _, check in self.results())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["counts"] = {status.value: n for status, n in self.counts().items()}
        return _plain(data)


SETUP = "setup"
"""The pseudo-check that reports a case that could not be set up (load, bind, build)."""
RUN = "run"
"""The pseudo-check that reports a case whose worker process crashed, hung or was killed."""
VERIFIED = "verified"
"""The pseudo-check saying no gradient value was verified (every selected gradient check skipped)."""
INVALID_SPEC = "spec"
"""The pseudo-check that reports a spec file that is not valid (the other specs still run)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

"""A pytest plugin: spec files become test items, one per case × check, with lossctl's diagnosis as
the failure text. Opt in with `pytest --lossctl` or `lossctl = true` in the pytest ini options.

Imports nothing heavy until enabled, since pytest loads every installed plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossctl")
    group.addoption("--lossctl", action="store_true", help="collect lossctl spec files (*.yaml) as tests")
    group.addoption("--lossctl-device", default=None, help="device for lossctl checks (default: cpu)")
    parser.addini("lossctl", type="bool", default=False, help="collect lossctl spec files as tests")
    parser.addini("lossctl_device", default="", help="device for lossctl checks (default: the config's, else cpu)")


VERIFIED = "verified"
"""lossctl.report.VERIFIED: the item failing a case where no gradient value could be verified."""


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--lossctl") or config.getini("lossctl"))


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml") or not _enabled(parent.config):
        return None
    try:
        head = file_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "function:" not in head:  # not a lossctl spec: leave other YAML alone
        return None
    return SpecFile.from_parent(parent, path=file_path)


def _settings(config: pytest.Config) -> Any:
    """The project's settings (lossctl.yaml / [tool.lossctl] at the rootdir), resolved once, with
    --lossctl-device over the config's device."""
    cached = getattr(config, "_lossctl_settings", None)
    if cached is None:
        from lossctl.config import load_config
        from lossctl.settings import resolve_settings

        project = load_config(Path(config.rootpath))
        device = config.getoption("--lossctl-device") or config.getini("lossctl_device") or project.device or "cpu"
        cached = resolve_settings(project, device=device)
        config._lossctl_settings = cached  # type: ignore[attr-defined]
    return cached


class SpecFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from lossctl.checks import select_checks
        from lossctl.errors import LossctlError
        from lossctl.spec import check_input_memory, load_spec_file, sweep
        from lossctl.suite import Job

        try:
            settings = _settings(self.config)
            specs = load_spec_file(self.path, tolerance=settings.tolerance)
            # a spec from a pull request: the same 1 GiB bound as the CLI, which alone can lift it
            check_input_memory(specs, allow="`lossctl check --allow-large` (the plugin keeps the bound)")
        except LossctlError as error:
            yield InvalidSpec.from_parent(self, name="spec", message=str(error))
            return
        for spec in specs:
            if spec.world_size is not None:  # ranks in processes: lossctl.distributed, not a pytest item each
                yield DistributedSpec.from_parent(self, name=spec.name)
                continue
            checks = select_checks(settings.checks, settings.skip, spec.checks, settings.base_checks)
            for index, point in enumerate(sweep(spec)):
                case_id = f"{spec.name}[{point.label()}]" if point.swept else spec.name
                for check_id in [c.id for c in checks] + [VERIFIED]:
                    yield CheckItem.from_parent(
                        self, name=f"{case_id}::{check_id}", job=Job(spec), point=index, check_id=check_id
                    )


class DistributedSpec(pytest.Item):
    def runtest(self) -> None:
        pytest.skip("a distributed spec (world_size): run it with `lossctl check`")


class InvalidSpec(pytest.Item):
    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise LossctlFailure(self.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)


class LossctlFailure(Exception):
    """A check that failed or raised, carrying lossctl's diagnosis."""


_CASES: dict[tuple[str, str, int], dict[str, Any]] = {}


class CheckItem(pytest.Item):
    def __init__(self, *, job: Any, point: int, check_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job, self.point, self.check_id = job, point, check_id

    def _results(self) -> dict[str, Any]:
        """The case's results, run once for all its check items."""
        key = (str(self.path), self.job.spec.name, self.point)
        if key not in _CASES:
            from lossctl.runner import Task, run_task

            options = _settings(self.config).run_options()
            (case,) = run_task(Task(self.job, self.point), options) or (None,)
            _CASES[key] = {r.check: r for r in case.checks} if case else {}
        return _CASES[key]

    def runtest(self) -> None:
        from lossctl.report import RUN, SETUP, Status

        results = self._results()
        broken = results.get(SETUP) or results.get(RUN)
        if broken is not None:
            raise LossctlFailure(f"{broken.detail}\n{broken.traceback or ''}".rstrip())
        result = results.get(self.check_id)
        if result is None and self.check_id == VERIFIED:
            return  # a gradient check verified a gradient value (or none was asked for)
        if result is None:
            pytest.skip(f"{self.check_id} did not run")
        if result.status is Status.SKIPPED:
            pytest.skip(result.detail)
        if result.status.is_problem:
            parts = [f"{result.status.value.upper()}: {result.detail}"]
            if result.hint:
                parts.append(f"hint: {result.hint}")
            parts += [p for p in (result.explain, result.traceback) if p]
            raise LossctlFailure("\n".join(parts))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, LossctlFailure):
            case = self.name.rsplit("::", 1)[0]
            return f"lossctl {self.check_id} on {case} ({self.job.spec.function}):\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = (self.job.spec.line or 1) - 1
        return self.path, line, f"lossctl: {self.name}"

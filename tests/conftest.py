"""Shared fixtures: a CLI runner with stable output, spec writers, and case builders."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent

# Fixed width and no colour, so rich output is stable across terminals.
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "LOSSCTL_DEBUG": ""}


@pytest.fixture(autouse=True, scope="session")
def limits_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bench's measured machine limits go to a temporary cache (measured once per session), never
    the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Invoke `lossctl ARGS…` in-process from the repository root (so `tests.fns` imports)."""
    from lossctl.cli import app

    monkeypatch.chdir(REPO)

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        runner = CliRunner()
        result = runner.invoke(app, list(args), env=CLI_ENV, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented YAML spec into tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def check_function() -> Callable[..., dict[str, object]]:
    """Run checks on one Function; returns {check id: CheckResult} for its single case."""
    from lossctl.runner import RunOptions, run_checks
    from lossctl.spec import load_specs
    from lossctl.suite import Job

    def run(reference: str, spec_yaml: str | None = None, checks: tuple[str, ...] | None = None):
        if spec_yaml is None:
            from lossctl.spec import Spec

            spec = Spec(function=reference, name=reference.rsplit(".", 1)[-1], args_given=False)
        else:
            text = f"function: {reference}\n" + textwrap.dedent(spec_yaml).lstrip()
            (spec,) = load_specs(text, source="test.yaml")
        report = run_checks([Job(spec)], RunOptions(device="cpu", checks=checks))
        assert len(report.cases) == 1
        return {result.check: result for result in report.cases[0].checks}

    return run

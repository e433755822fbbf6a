"""Where each format goes: --format/--output pairs, the table on stdout, and GitHub's summary and
annotations when running in GitHub Actions."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from lossctl.errors import UsageError
from lossctl.render import Format, renderer
from lossctl.report import Report


@dataclass(frozen=True)
class OutputPlan:
    stdout: Format
    files: tuple[tuple[Format, Path], ...]


def plan_outputs(formats: Sequence[Format], outputs: Sequence[Path]) -> OutputPlan:
    """Pair `--format`s with `--output`s in order; what is left over goes to stdout (one format at
    most); with every format in a file, the table still goes to stdout."""
    if len(outputs) > len(formats):
        raise UsageError(
            f"{len(outputs)} --output for {len(formats)} --format", hint="give a --format before each --output"
        )
    files = tuple(zip(formats, outputs, strict=False))
    rest = list(formats[len(outputs) :])
    if len(rest) > 1:
        raise UsageError(
            f"only one format can go to stdout, got {', '.join(f.value for f in rest)}",
            hint="send the others to files with --output",
        )
    return OutputPlan(stdout=rest[0] if rest else Format.TABLE, files=files)


def write_outputs(
    report: Report, plan: OutputPlan, *, verbose: bool, console: Console, err: Console, quiet: bool = False
) -> None:
    for fmt, path in plan.files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_text(report, fmt, verbose), encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--output {path}: cannot write ({error.strerror})") from None
        err.print(f"wrote {fmt.value} report to {path}")
    rendered = renderer(plan.stdout)(report, verbose=verbose, quiet=quiet, width=console.width)
    if isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        console.print(rendered)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(_text(report, Format.MARKDOWN, verbose))
        except OSError as error:
            err.print(f"[yellow]warning:[/] cannot append to GITHUB_STEP_SUMMARY ({error.strerror})")
    # Annotations join the human formats on stdout; JSON or JUnit on stdout must stay parseable.
    if os.environ.get("GITHUB_ACTIONS") == "true" and plan.stdout in (Format.TABLE, Format.MARKDOWN):
        sys.stdout.write(_text(report, Format.GITHUB, verbose))


def _text(report: Report, fmt: Format, verbose: bool) -> str:
    rendered = renderer(fmt)(report, verbose=verbose)
    if isinstance(rendered, str):
        return rendered
    console = Console(record=True, width=120, color_system=None, file=io.StringIO())
    console.print(rendered)
    return console.export_text()

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
from rich.markup import escape

from lossctl.errors import UsageError
from lossctl.files import Stamp, WriteError, check_distinct, check_writable, write_atomic
from lossctl.render import Format, renderer
from lossctl.report import Report


@dataclass(frozen=True)
class OutputPlan:
    stdout: Format
    files: tuple[tuple[Format, Path], ...]
    stamps: tuple[Stamp, ...] = ()
    """Each file as it was when checked, before the run."""


def plan_outputs(formats: Sequence[Format], outputs: Sequence[Path]) -> OutputPlan:
    """Pair `--format`s with `--output`s in order; what is left over goes to stdout (one format at
    most); with every format in a file, the table still goes to stdout."""
    if len(outputs) > len(formats):
        raise UsageError(
            f"{len(outputs)} --output for {len(formats)} --format", hint="give a --format before each --output"
        )
    files = tuple((fmt, Path(path)) for fmt, path in zip(formats, outputs, strict=False))
    rest = list(formats[len(outputs) :])
    if len(rest) > 1:
        raise UsageError(
            f"only one format can go to stdout, got {', '.join(f.value for f in rest)}",
            hint="send the others to files with --output",
        )
    check_distinct([("--output", path) for _, path in files])
    stamps = tuple(check_writable(path, "--output") for _, path in files)  # before the run, not after it
    return OutputPlan(stdout=rest[0] if rest else Format.TABLE, files=files, stamps=stamps)


def write_outputs(
    report: Report, plan: OutputPlan, *, verbose: bool, console: Console, err: Console, quiet: bool = False
) -> None:
    """Print the stdout format, then write each file atomically; a failed write raises WriteError
    (after the others are written and the table is printed, so nothing else is lost)."""
    _print_stdout(report, plan, verbose=verbose, console=console, err=err, quiet=quiet)
    failed: list[WriteError] = []
    stamps = plan.stamps or (None,) * len(plan.files)
    for (fmt, path), before in zip(plan.files, stamps, strict=True):
        try:
            raced = write_atomic(path, _text(report, fmt, verbose), "--output", before=before)
        except WriteError as error:
            failed.append(error)
            continue
        raced_note = " (another process wrote it during this run; this report replaced it)" if raced else ""
        err.print(f"wrote {fmt.value} report to {path}{raced_note}", markup=False)
    if failed:
        for error in failed[:-1]:
            err.print(f"[bold red]error:[/] {escape(error.message)}")
        raise failed[-1]


def _print_stdout(
    report: Report, plan: OutputPlan, *, verbose: bool, console: Console, err: Console, quiet: bool
) -> None:
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

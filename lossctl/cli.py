"""The command line: parse flags into options, call the core, render, map the outcome to an exit code.

Imports nothing heavy at module level, so `lossctl --help` never imports torch.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lossctl import __version__
from lossctl.errors import ExitCode, LossctlError
from lossctl.render import Format

EXIT_CODES_HELP = (
    "Exit codes: 0 every check passed (skips allowed) · 1 a check failed or raised · "
    "2 nothing could run (bad arguments, invalid spec, unavailable device, nothing loadable)."
)

app = typer.Typer(
    name="lossctl",
    help="Check that a custom torch.autograd.Function is right, say why not, and time it.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lossctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Check that a custom torch.autograd.Function is right, say why not, and time it."""


@dataclass(frozen=True)
class CheckCommand:
    """`lossctl check`'s flags, parsed."""

    targets: tuple[str, ...]
    device: str
    seed: int | None
    checks: tuple[str, ...] | None
    skip: tuple[str, ...]
    format: Format
    verbose: bool
    configs_dir: Path


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


@app.command(epilog=EXIT_CODES_HELP)
def check(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Functions (pkg.mod.Class, pkg.mod:Class, file.py:Class), spec files (.yaml) or "
            "folders of specs. Default: every spec under ./configs/.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N, mps, or auto (cuda if available).")
    ] = "auto",
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for inputs and grad_outputs (overrides specs).")
    ] = None,
    checks: Annotated[
        str | None,
        typer.Option("--checks", help="Comma-separated check ids to run (see `lossctl checks`)."),
    ] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Comma-separated check ids to leave out.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.TABLE,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Full details and your tracebacks under the table.")
    ] = False,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Like -v: the worst elements and a heat map of |expected − got| per argument."),
    ] = False,
) -> None:
    """Check forward, backward and gradients of Functions, from specs or by dotted path."""
    command = CheckCommand(
        targets=tuple(targets or ()),
        device=device,
        seed=seed,
        checks=_split(checks) or None,
        skip=_split(skip),
        format=fmt,
        verbose=verbose or explain,
        configs_dir=Path("configs"),
    )
    raise typer.Exit(_guarded(lambda: _run_check(command), verbose))


@app.command(epilog=EXIT_CODES_HELP.replace("a check failed or raised", "a case raised, or --fail-slower tripped"))
def bench(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="As for `check`. Default: every spec under ./configs/.", show_default=False),
    ] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N, mps, or auto.")] = "auto",
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="Cast floating inputs to this dtype (e.g. bfloat16).")
    ] = None,
    dims: Annotated[
        list[str] | None,
        typer.Option("--dims", help="Override a dim's sizes, e.g. N=1024,4096,16384 (repeatable)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for inputs (overrides specs).")] = None,
    min_time: Annotated[
        float, typer.Option("--min-time", help="Seconds each timing runs at least (adaptive autorange).")
    ] = 0.2,
    save: Annotated[Path | None, typer.Option("--save", help="Write results and the environment to JSON.")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="Compare with a JSON file from --save.")] = None,
    fail_slower: Annotated[
        str | None,
        typer.Option(
            "--fail-slower",
            help="With --compare: exit 1 when a case is slower by more than P% and its noise band, e.g. 10%.",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write time and memory vs size to a PNG (needs lossctl[plot]).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format (table or json).")] = Format.TABLE,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks of cases that raised.")] = False,
) -> None:
    """Time forward, backward and both; memory; speedup against the spec's reference."""
    command = BenchCommand(
        targets=tuple(targets or ()),
        device=device,
        dtype=dtype,
        dims=tuple(dims or ()),
        seed=seed,
        min_time=min_time,
        save=save,
        compare=compare,
        fail_slower=fail_slower,
        plot=plot,
        format=fmt,
        verbose=verbose,
        configs_dir=Path("configs"),
    )
    raise typer.Exit(_guarded(lambda: _run_bench(command), verbose))


@dataclass(frozen=True)
class BenchCommand:
    """`lossctl bench`'s flags, parsed."""

    targets: tuple[str, ...]
    device: str
    dtype: str | None
    dims: tuple[str, ...]
    seed: int | None
    min_time: float
    save: Path | None
    compare: Path | None
    fail_slower: str | None
    plot: Path | None
    format: Format
    verbose: bool
    configs_dir: Path


def _run_bench(command: BenchCommand) -> ExitCode:
    _quiet_torch_warnings()
    from lossctl.bench import BenchOptions, load_saved, parse_dims, parse_percent, run_bench
    from lossctl.errors import UsageError
    from lossctl.suite import collect

    if command.format not in (Format.TABLE, Format.JSON):
        raise UsageError(f"--format {command.format.value} is not available for bench", hint="use table or json")
    if command.fail_slower and not command.compare:
        raise UsageError("--fail-slower needs --compare FILE.json")
    if command.min_time <= 0:
        raise UsageError("--min-time must be positive")
    if command.plot is not None:
        from lossctl.render.plot import require_matplotlib

        require_matplotlib()
    options = BenchOptions(
        device=command.device,
        dtype=command.dtype,
        dims=parse_dims(command.dims),
        seed=command.seed,
        min_time=command.min_time,
        compare=load_saved(str(command.compare)) if command.compare else None,
        compare_name=str(command.compare) if command.compare else None,
        fail_slower=parse_percent(command.fail_slower),
    )
    jobs = collect(command.targets, configs_dir=command.configs_dir)
    err = Console(stderr=True)
    if command.format is Format.TABLE and err.is_terminal:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("benchmarking", total=None)

            def update(label: str, done: int, total: int) -> None:
                progress.update(task, description=label, completed=done, total=total)

            report = run_bench(jobs, options, update)
    else:
        report = run_bench(jobs, options)
    if command.save is not None:
        import json

        command.save.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if command.plot is not None:
        from lossctl.render.plot import write_plot

        write_plot(report, command.plot)
    if command.format is Format.JSON:
        import json

        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        from lossctl.render.bench_table import render

        Console().print(render(report, verbose=command.verbose))
        if report.fingerprint_differences:
            err.print(
                "[bold yellow]warning:[/] the saved run was made in another environment: "
                + "; ".join(report.fingerprint_differences)
            )
    if report.cases and all(c.error for c in report.cases) and all(c.function_result is None for c in report.cases):
        return ExitCode.USAGE
    if report.errors or report.regressions:
        return ExitCode.CHECK_FAILED
    return ExitCode.OK


@app.command("checks")
def list_checks() -> None:
    """List every check with its id and what it catches."""

    def show() -> ExitCode:
        from rich.table import Table

        from lossctl.checks import registry

        table = Table("id", "default", "what it checks", header_style="bold")
        for item in registry():
            table.add_row(item.id, "on" if item.default else "opt-in", item.description)
        Console().print(table)
        return ExitCode.OK

    raise typer.Exit(_guarded(show, verbose=False))


def _quiet_torch_warnings() -> None:
    # torch warns when numpy is absent; lossctl never needs numpy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)


def _run_check(command: CheckCommand) -> ExitCode:
    _quiet_torch_warnings()
    from lossctl.render import renderer
    from lossctl.runner import RunOptions, run_checks
    from lossctl.suite import collect

    jobs = collect(command.targets, configs_dir=command.configs_dir)
    options = RunOptions(device=command.device, seed=command.seed, checks=command.checks, skip=command.skip)
    err = Console(stderr=True)
    if command.format is Format.TABLE and err.is_terminal:
        with err.status("checking…") as status:
            report = run_checks(jobs, options, lambda case, result: status.update(f"{case} · {result.check}"))
    else:
        report = run_checks(jobs, options)
    rendered = renderer(command.format)(report, verbose=command.verbose)
    if isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        Console().print(rendered)
    if not report.anything_ran:
        return ExitCode.USAGE
    return ExitCode.OK if report.ok else ExitCode.CHECK_FAILED


def _guarded(work: object, verbose: bool) -> int:
    """Run a command body; a LossctlError becomes one clear message and exit code 2."""
    err = Console(stderr=True, highlight=False)
    try:
        return int(work())  # type: ignore[operator]
    except LossctlError as error:
        err.print(f"[bold red]error:[/] {_escape(error.message)}")
        if error.hint:
            err.print(f"[cyan]hint:[/] {_escape(error.hint)}")
        if error.details:
            err.print(error.details, markup=False, style="dim")
        return int(error.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except Exception as error:  # a bug in lossctl itself: say so, without a wall of text
        err.print(f"[bold red]internal error in lossctl:[/] {type(error).__name__}: {_escape(str(error))}")
        if verbose or os.environ.get("LOSSCTL_DEBUG"):
            err.print(traceback.format_exc(), markup=False)
        else:
            err.print("rerun with -v (or LOSSCTL_DEBUG=1) for the traceback, and please report it")
        return int(ExitCode.USAGE)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def main() -> None:
    app(prog_name="lossctl")

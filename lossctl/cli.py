"""The command line: parse flags into options, call the core, render, map the outcome to an exit code.

Imports nothing heavy at module level, so `lossctl --help` never imports torch.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lossctl import __version__
from lossctl.errors import ExitCode, LossctlError
from lossctl.render import Format

EXIT_CODES_HELP = (
    "Exit codes: 0 every check passed (skips allowed) · 1 a check failed or raised · "
    "2 nothing could run (bad arguments, invalid spec, unavailable device, nothing loadable) · "
    "3 lossctl itself broke (please report)."
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
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.", metavar=""),
    ] = False,
) -> None:
    """Check that a custom torch.autograd.Function is right, say why not, and time it."""


@dataclass(frozen=True)
class CheckCommand:
    """`lossctl check`'s flags, parsed. None means "not given": the project config decides."""

    targets: tuple[str, ...]
    device: str | None
    seed: int | None
    checks: str | None
    """As given: comma-separated ids."""
    skip: str | None
    formats: tuple[Format, ...]
    outputs: tuple[Path, ...]
    verbose: bool
    jobs: str | None
    timeout: float | None
    repro: Path | None
    changed_since: str | None
    shard: str | None
    config: Path | None
    allow_large: bool = False
    allow_unverified_gradients: bool = False
    world_size: str | None = None
    quiet: bool = False
    exitfirst: bool = False
    keyword: str | None = None
    budget: float | None = None
    last_failed: bool = False
    threads: int | None = None


def _parse_shard(text: str) -> tuple[int, int]:
    from lossctl.errors import UsageError

    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise UsageError(f"--shard: `{text}` is not K/N with 1 <= K <= N", hint="e.g. --shard 2/4")
    return shard


def _parse_world_size(text: str) -> tuple[int, ...]:
    from lossctl.distributed.cli import parse_world_size

    return parse_world_size(text)


def _split(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = tuple(part.strip() for part in value.split(",") if part.strip())
    if not parts:
        from lossctl.errors import UsageError

        raise UsageError(f"`{value}` names no check id", hint="give comma-separated ids, e.g. gradcheck,linearity")
    return parts


@app.command(epilog=EXIT_CODES_HELP)
def check(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Functions (pkg.mod.Class, pkg.mod:Class, file.py:Class), spec files (.yaml) or "
            "folders of specs. Default: the config's `specs` (./configs/).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", "-d", help="cpu, cuda, cuda:N, mps, or auto (cuda if available). [default: auto]"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for inputs and grad_outputs (overrides specs).")
    ] = None,
    checks: Annotated[
        str | None,
        typer.Option("--checks", help="Comma-separated check ids to run (see `lossctl checks`)."),
    ] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Comma-separated check ids to leave out.")] = None,
    fmt: Annotated[
        list[Format] | None,
        typer.Option("--format", "-f", help="Output format; repeatable, each paired in order with an --output."),
    ] = None,
    output: Annotated[
        list[Path] | None,
        typer.Option("--output", "-o", help="File for the --format in the same position (the report stays on stdout)."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="The full table of case × check, details and your tracebacks.", metavar=""
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Like -v: the worst elements and a heat map of |expected − got| per argument.",
            metavar="",
        ),
    ] = False,
    jobs: Annotated[
        str | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes (isolated: a crash or hang is one ERROR row); auto = cores; "
            "0 = run in this process. [default: 1]",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Seconds a case may run in a worker before it is killed. [default: 300, or 2× the budget]"
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Seconds a case's checks may take together: checks plan to fit it, or skip saying why. "
            "[default: 60, or the spec's/config's budget:]",
        ),
    ] = None,
    repro: Annotated[
        Path | None,
        typer.Option("--repro", help="Write a standalone script per failure into this folder."),
    ] = None,
    changed_since: Annotated[
        str | None,
        typer.Option("--changed-since", help="Only specs whose file or Function's source changed since this git ref."),
    ] = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Run the K-th of N deterministic slices of the cases, e.g. 2/4.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Project config (default: ./lossctl.yaml or pyproject.toml [tool.lossctl])."),
    ] = None,
    allow_large: Annotated[
        bool, typer.Option("--allow-large", help="Run specs whose inputs need more than 1 GiB per case.")
    ] = False,
    allow_unverified_gradients: Annotated[
        bool,
        typer.Option(
            "--allow-unverified-gradients",
            help="Pass even when no check could verify a gradient value (e.g. a float32-only kernel).",
        ),
    ] = False,
    world_size: Annotated[
        str | None,
        typer.Option("--world-size", help="Ranks for distributed specs, e.g. 4 or 2,4 (overrides `world_size:`)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only the failures and the totals line.", metavar="")
    ] = False,
    exitfirst: Annotated[
        bool, typer.Option("--exitfirst", "-x", help="Stop after the first case that fails.", metavar="")
    ] = False,
    keyword: Annotated[
        str | None,
        typer.Option("-k", help="Only cases whose name matches: substrings with and/or/not, e.g. 'CE and not N=1'."),
    ] = None,
    last_failed: Annotated[
        bool,
        typer.Option("--lf", "--last-failed", help="Only the cases that failed last run (all if none).", metavar=""),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Intra-op threads per case. [default: 1 per case, a worker's share of the cores from 2^18 elements]",
        ),
    ] = None,
) -> None:
    """Check forward, backward and gradients of Functions, from specs or by dotted path."""
    command = CheckCommand(
        targets=tuple(targets or ()),
        device=device,
        seed=seed,
        checks=checks,
        skip=skip,
        formats=tuple(fmt or ()),
        outputs=tuple(output or ()),
        verbose=verbose or explain,
        jobs=jobs,
        timeout=timeout,
        budget=budget,
        repro=repro,
        changed_since=changed_since,
        shard=shard,
        config=config,
        allow_large=allow_large,
        allow_unverified_gradients=allow_unverified_gradients,
        world_size=world_size,
        quiet=quiet,
        exitfirst=exitfirst,
        keyword=keyword,
        last_failed=last_failed,
        threads=threads,
    )
    raise typer.Exit(_guarded(lambda: _run_check(command), verbose))


class BenchFormat(str, Enum):
    """The formats bench writes (a subset of check's)."""

    TABLE = "table"
    JSON = "json"


@app.command(epilog=EXIT_CODES_HELP.replace("a check failed or raised", "a case raised, or --fail-slower tripped"))
def bench(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="As for `check`. Default: every spec under ./configs/.", show_default=False),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="cpu, cuda, cuda:N, mps, or auto. [default: auto]")
    ] = None,
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
    max_time: Annotated[
        float, typer.Option("--max-time", help="Seconds a noisy timing may keep sampling at most.")
    ] = 5.0,
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
        Path | None,
        typer.Option(
            "--plot", help="Write time, memory and % of roofline vs size to a PNG (needs the extra: lossctl\\[plot])."
        ),
    ] = None,
    fmt: Annotated[BenchFormat, typer.Option("--format", "-f", help="Output format.")] = BenchFormat.TABLE,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks of cases that raised.", metavar="")
    ] = False,
    allow_large: Annotated[
        bool, typer.Option("--allow-large", help="Run specs whose inputs need more than 1 GiB per case.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure the machine's bandwidth and matmul rate again (not cached).")
    ] = False,
    threads: Annotated[
        int,
        typer.Option("--threads", help="Intra-op threads for every timing; saved with --save and compared."),
    ] = 1,
) -> None:
    """Time forward, backward and both; memory; speedup against the spec's reference."""
    command = BenchCommand(
        targets=tuple(targets or ()),
        device=device,
        dtype=dtype,
        dims=tuple(dims or ()),
        seed=seed,
        min_time=min_time,
        max_time=max_time,
        save=save,
        compare=compare,
        fail_slower=fail_slower,
        plot=plot,
        format=Format(fmt.value),
        verbose=verbose,
        allow_large=allow_large,
        no_cache=no_cache,
        threads=threads,
    )
    raise typer.Exit(_guarded(lambda: _run_bench(command), verbose))


@dataclass(frozen=True)
class BenchCommand:
    """`lossctl bench`'s flags, parsed."""

    targets: tuple[str, ...]
    device: str | None
    dtype: str | None
    dims: tuple[str, ...]
    seed: int | None
    min_time: float
    max_time: float
    save: Path | None
    compare: Path | None
    fail_slower: str | None
    plot: Path | None
    format: Format
    verbose: bool
    allow_large: bool = False
    no_cache: bool = False
    threads: int = 1


def _run_bench(command: BenchCommand) -> ExitCode:
    _quiet_torch_warnings()
    import math

    from lossctl.bench_options import BenchOptions, load_saved, parse_dims, parse_percent
    from lossctl.errors import UsageError
    from lossctl.files import check_distinct, check_writable, write_atomic
    from lossctl.flags import validate_targets
    from lossctl.limits import MAX_INPUT_BYTES
    from lossctl.settings import resolve_settings
    from lossctl.spec import check_input_memory
    from lossctl.suite import collect

    if command.format not in (Format.TABLE, Format.JSON):
        raise UsageError(f"--format {command.format.value} is not available for bench", hint="use table or json")
    if command.fail_slower and not command.compare:
        raise UsageError("--fail-slower needs --compare FILE.json")
    if command.threads < 1:
        raise UsageError("--threads must be 1 or more")
    if not (0 < command.min_time <= command.max_time < math.inf):
        raise UsageError("--min-time must be positive and --max-time at least --min-time")
    validate_targets(command.targets)
    save_stamp = check_writable(command.save, "--save") if command.save is not None else None
    if command.plot is not None:
        check_distinct([("--plot", command.plot), *([("--save", command.save)] if command.save else [])])
        check_writable(command.plot, "--plot")
        from lossctl.render.plot import require_matplotlib

        require_matplotlib()
    settings = resolve_settings(device=command.device, seed=command.seed)
    options = BenchOptions(
        device=settings.device,
        dtype=command.dtype,
        dims=parse_dims(command.dims),
        seed=command.seed,
        min_time=command.min_time,
        max_time=command.max_time,
        compare=load_saved(str(command.compare)) if command.compare else None,
        compare_name=str(command.compare) if command.compare else None,
        fail_slower=parse_percent(command.fail_slower),
        remeasure=command.no_cache,
        threads=command.threads,
    )
    targets = command.targets or settings.spec_paths
    jobs = collect(
        targets, configs_dir=settings.configs_dir, tolerance=settings.tolerance, explicit=bool(command.targets)
    )
    check_input_memory(
        [job.spec for job in jobs], limit=None if command.allow_large else MAX_INPUT_BYTES, overrides=options.dims
    )
    from lossctl.bench import run_bench  # imports torch: only once the specs are known to be good

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
    if command.format is Format.JSON:
        import json

        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        from lossctl.render.bench_table import render

        console = Console()
        console.print(render(report, verbose=command.verbose, width=console.width))
    if command.save is not None:  # after the table: a failed write loses no result on screen
        import json

        write_atomic(command.save, json.dumps(report.to_dict(), indent=2) + "\n", "--save", before=save_stamp)
        err.print(f"saved {len(report.cases)} case{'s' * (len(report.cases) != 1)} to {command.save}", markup=False)
    if command.plot is not None:
        from lossctl.render.plot import write_plot

        write_plot(report, command.plot)
    if report.interrupted:
        err.print("[yellow]interrupted: the results above hold the cases that finished[/]")
        return ExitCode.INTERRUPTED
    if report.fingerprint_differences:
        err.print(
            "[bold yellow]warning:[/] the saved run was made in another environment: "
            + "; ".join(report.fingerprint_differences)
        )
    if report.cases and all(c.setup_failed for c in report.cases):
        return ExitCode.USAGE  # nothing could be loaded
    if options.fail_slower is not None and not report.comparisons:
        err.print(f"[bold red]error:[/] --fail-slower: no case matches {command.compare}, so nothing was compared")
        err.print("[cyan]hint:[/] run bench on the same targets (and --dims) as the saved run")
        return ExitCode.USAGE
    if report.errors or report.regressions:
        return ExitCode.CHECK_FAILED
    return ExitCode.OK


@app.command("init")
def init(
    target: Annotated[str, typer.Argument(help="The Function (pkg.mod.Class, pkg.mod:Class or file.py:Class).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Spec file to write. [default: configs/<name>.yaml]", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.", metavar="")] = False,
) -> None:
    """Write a first spec for a Function from its forward signature, and check that it builds."""
    raise typer.Exit(_guarded(lambda: _run_init(target, output, force), verbose=False))


def _run_init(reference: str, output: Path | None, force: bool) -> ExitCode:
    _quiet_torch_warnings()
    from lossctl.config import load_config
    from lossctl.errors import UsageError
    from lossctl.paths import relative_path
    from lossctl.runner import SetupFailure, build_cases
    from lossctl.scaffold import default_spec_path, load_target, reference_from, spec_text
    from lossctl.spec import load_spec_file
    from lossctl.suite import Job

    target = load_target(reference)
    path = output or default_spec_path(load_config().root / "configs", target)
    if path.exists() and not force:
        raise UsageError(f"{path} exists", hint="pass --force to overwrite it, or --output another file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(reference_from(path.parent, reference), target, as_given=reference), encoding="utf-8")
    err = Console(stderr=True, highlight=False)
    shown = relative_path(str(path))
    (spec,) = load_spec_file(path)
    import torch

    for item in build_cases(Job(spec), torch.device("cpu"), spec.seed):
        if isinstance(item, SetupFailure):
            err.print(f"wrote {shown}, but it does not build yet: {_escape(item.message)}")
            if item.details:
                err.print(item.details, markup=False, style="dim")
            return ExitCode.USAGE
        try:
            item.call(item.fresh())
        except Exception as error:  # the user's forward raised on these inputs
            from lossctl.loader import describe_exception

            err.print(f"wrote {shown}; forward raised on its inputs: {_escape(describe_exception(error))}")
            err.print("[cyan]hint:[/] edit the shapes, dtypes or values in the spec, then run lossctl check")
            return ExitCode.USAGE
    Console(highlight=False).print(f"wrote {shown} (forward runs on its inputs); next: lossctl check {shown}")
    return ExitCode.OK


@app.command("list")
def list_targets(
    where: Annotated[str, typer.Argument(help="A module (pkg.losses) or a .py file.")],
) -> None:
    """List the Functions and Modules a module defines, and which spec covers each."""

    def show() -> ExitCode:
        _quiet_torch_warnings()
        from rich.table import Table

        from lossctl.config import load_config
        from lossctl.scaffold import find_targets
        from lossctl.spec import find_spec_files

        project = load_config()
        files = [f for folder in project.spec_paths() if Path(folder).is_dir() for f in find_spec_files(folder)]
        found = find_targets(where, files)
        console = Console(highlight=False)
        if not found:
            console.print(f"no torch.autograd.Function or nn.Module subclass defined in {where}")
            return ExitCode.OK
        table = Table("name", "kind", "spec", header_style="bold")
        for item in found:
            specs = ", ".join(_relative(f) for f in item.specs)
            table.add_row(item.reference, item.kind, specs or f"none — lossctl init {item.reference}")
        console.print(table)
        return ExitCode.OK

    raise typer.Exit(_guarded(show, verbose=False))


def _relative(path: str) -> str:
    from lossctl.paths import relative_path

    return relative_path(path)


@app.command("checks")
def list_checks() -> None:
    """List every check with its id and what it catches."""

    def show() -> ExitCode:
        from rich.table import Table

        from lossctl.catalogue import default_label, info
        from lossctl.checks import registry

        table = Table("id", "default", "what it checks", header_style="bold")
        for item in registry():
            table.add_row(item.id, default_label(info(item.id)), item.description)
        from lossctl.distributed import DESCRIPTIONS

        for check_id, description in DESCRIPTIONS.items():  # run by specs with `world_size:`
            table.add_row(check_id, "distributed", description)
        Console().print(table)
        return ExitCode.OK

    raise typer.Exit(_guarded(show, verbose=False))


def _quiet_torch_warnings() -> None:
    # torch warns when numpy is absent; lossctl never needs numpy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)


def _run_check(command: CheckCommand) -> ExitCode:
    _quiet_torch_warnings()
    from lossctl.errors import SpecError, UsageError
    from lossctl.files import check_repro_folder
    from lossctl.flags import validate_in_process_timeout, validate_targets
    from lossctl.limits import MAX_INPUT_BYTES
    from lossctl.render.outputs import plan_outputs, write_outputs
    from lossctl.report import Report, environment_without_torch
    from lossctl.selection import count_invalid, invalid_spec_results, read_last_failed, update_last_failed
    from lossctl.settings import resolve_settings
    from lossctl.spec import check_input_memory
    from lossctl.suite import collect, filter_changed

    validate_targets(command.targets)  # seed, device, timeout, budget: resolve_settings, for every front end
    plan = plan_outputs(command.formats, command.outputs)
    if command.repro is not None:
        check_repro_folder(command.repro)
    if command.threads is not None and command.threads < 1:
        raise UsageError("--threads must be 1 or more")
    if command.keyword is not None:
        from lossctl.selection import keyword_matcher

        keyword_matcher(command.keyword)  # a malformed expression is an error before anything runs
    settings = resolve_settings(
        device=command.device,
        seed=command.seed,
        checks=_split(command.checks) or None,
        skip=_split(command.skip),
        jobs=command.jobs,
        timeout=command.timeout,
        budget=command.budget,
        shard=_parse_shard(command.shard) if command.shard else None,
        allow_unverified_gradients=command.allow_unverified_gradients or None,
        config=command.config,
        world_size=_parse_world_size(command.world_size) if command.world_size is not None else None,
    )
    validate_in_process_timeout(settings.jobs, command.timeout is not None)
    err = Console(stderr=True)
    only = None
    if command.last_failed:
        last = read_last_failed(settings.project_root)
        if last:
            only = frozenset(last)
        else:
            err.print("--lf: no failures recorded, running everything")
    # Specs are read before torch is imported: a hostile spec is refused in milliseconds.
    targets = command.targets or settings.spec_paths
    invalid: list[SpecError] = []
    jobs = collect(
        targets,
        configs_dir=settings.configs_dir,
        tolerance=settings.tolerance,
        explicit=bool(command.targets),
        invalid=invalid,
    )
    check_input_memory([job.spec for job in jobs], limit=None if command.allow_large else MAX_INPUT_BYTES)
    if command.changed_since is not None:
        jobs = filter_changed(jobs, command.changed_since)
    options = None
    if jobs:  # importing the runner imports torch: with nothing valid to run, it is never imported
        options = replace(
            settings.run_options(),
            threads=command.threads,
            keyword=command.keyword,
            only=only,
            exitfirst=command.exitfirst,
        )

    def run(
        on_result: Callable[[str, Any], None] | None = None, on_start: Callable[[Any], None] | None = None
    ) -> Report:
        if not jobs:  # only invalid specs, or nothing changed
            return Report(cases=(), environment=environment_without_torch(settings.device))
        from lossctl.memory import claim_process
        from lossctl.runner import run_checks

        claim_process()  # the process is lossctl's: per-check peaks may reset its peak-RSS mark
        return run_checks(jobs, options, on_result, on_start)

    if plan.stdout is Format.TABLE and err.is_terminal:
        from lossctl.render.live import LiveStatus

        live = LiveStatus()
        with err.status(live):  # rich redraws `live` at each refresh: the elapsed time moves mid-check
            report = run(live.finished, live.started)
    elif plan.stdout is Format.TABLE:
        report = run()
    else:
        # The report on stdout must stay parseable: what the user's code prints goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            report = run()
    if invalid:
        report = replace(report, cases=invalid_spec_results(invalid, report.environment.device) + report.cases)
    if report.interrupted and not report.cases:
        err.print("[yellow]interrupted before any case finished[/]")
        return ExitCode.INTERRUPTED
    if not report.cases:
        if command.changed_since is not None and not jobs:
            why = f"no spec or Function changed since {command.changed_since}"
        elif settings.shard:
            why = "this shard holds no case"
        else:
            why = "no case matches -k" if command.keyword else ""
        err.print(f"nothing to check: {why}" if why else "nothing to check")
    write_outputs(report, plan, verbose=command.verbose, quiet=command.quiet, console=Console(), err=err)
    if report.cases and not command.shard:
        update_last_failed(settings.project_root, report)
    if command.repro is not None and not report.ok and jobs:
        from lossctl.repro import write_repro_scripts

        written = write_repro_scripts(report, jobs, command.repro, options)
        err.print(f"wrote {len(written)} repro script{'s' * (len(written) != 1)} to {command.repro}")
    if report.interrupted:
        err.print("[yellow]interrupted: the report above holds the cases that finished[/]")
        return ExitCode.INTERRUPTED
    if not report.cases:
        return ExitCode.OK
    if count_invalid(report) or not report.anything_ran:
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
    except Exception as error:  # a bug in lossctl itself: exit 3, so CI tells it from a bad spec (2)
        err.print(
            f"[bold red]internal error in lossctl — please report:[/] {type(error).__name__}: {_escape(str(error))}"
        )
        err.print(traceback.format_exc(), markup=False)
        return int(ExitCode.INTERNAL)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def main() -> None:
    from lossctl import parallel

    parallel.FORK_IS_SAFE = True  # this process runs no torch op before it starts its workers
    app(prog_name="lossctl")

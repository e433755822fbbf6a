"""`lossctl bench` output: a rich table of timings and memory, scaling, and a comparison."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from lossctl.bench import BenchReport, Timing
from lossctl.render.fit import Column, build_table, fit_columns
from lossctl.render.roofline_table import roofline_table


def fmt_time(timing: Timing | None, *, spread: bool = False) -> Text:
    """`120µs`, or `120µs ±4.1µs` with the IQR; ` ~` marks a noisy timing."""
    if timing is None:
        return Text("—", style="dim")
    median, iqr = timing.median, timing.iqr
    scale, unit = _time_unit(median)
    text = Text(f"{median * scale:.3g}{unit}")
    if spread:
        spread_value = iqr * scale
        text.append(f" ±{spread_value:.0f}{unit}" if spread_value >= 10 else f" ±{spread_value:.2g}{unit}")
    if timing.noisy:
        text.append(" ~", style="yellow")
    return text


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 1.0:
        return 1.0, "s"
    if seconds >= 1e-3:
        return 1e3, "ms"
    return 1e6, "µs"


def fmt_bytes(count: int | None) -> str:
    if count is None:
        return "n/a"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= size:
            return f"{rate / size:.3g}{unit}/s"
    return f"{rate:.3g}/s"


def render(report: BenchReport, *, verbose: bool = False, width: int | None = None, **_: Any) -> RenderableType:
    """The timings table, fitted to `width` by dropping the least important figure columns
    (named under the table), notes, and warnings where noise makes a figure meaningless."""
    columns, sections, rows = bench_columns(report)
    shown, dropped = fit_columns(columns, width or 10_000)
    parts: list[RenderableType] = [build_table(shown, rows, sections)]
    has_reference = any(c.reference for c in report.cases)
    notes = [
        "medians of torch.utils.benchmark.Timer samples (±IQR for fwd+bwd); ~ marks IQR/median > 10%",
        "saved: bytes saved for backward beyond the inputs; peak: memory above the inputs "
        + (
            "(CUDA max_memory_allocated)"
            if report.fingerprint.device.startswith("cuda")
            else "(CPU profiler, op-level: a lower bound)"
        ),
    ]
    if has_reference:
        names = sorted({c.reference_name for c in report.cases if c.reference_name})
        notes.append(f"ref: {', '.join(names)}; speedup: ref fwd+bwd time / fn's; mem: fn peak / ref peak")
    if dropped:
        notes.append(f"left out to fit {width} columns: {', '.join(dropped)} (see --format json, or widen)")
    for spec, k in report.scaling.items():
        notes.append(f"{spec}: time ∝ elements^{k:.2f} over the sweep")
    for case in report.errors:
        notes.append(f"{case.case}: {case.error}")
    parts.extend(Text(note, style="dim") for note in notes)
    parts.extend(Text(f"warning: {warning}", style="yellow") for warning in noise_warnings(report))
    if (against_limit := roofline_table(report)) is not None:
        parts.append(against_limit)
    if report.compared_with is not None:
        parts.append(comparison_table(report))
    fp = report.fingerprint
    threads = f"{fp.threads} thread{'s' * (fp.threads != 1)}"
    parts.append(Text(f"torch {fp.torch} · {fp.device} ({fp.device_name}) · {threads} · dtype {fp.dtype}"))
    if verbose:
        for case in report.errors:
            if case.traceback:
                parts.append(Text(f"\n{case.case}\n{case.traceback}", style="dim"))
    return Group(*parts)


def bench_columns(report: BenchReport) -> tuple[list[Column], list[int], int]:
    """Every column with its cells, which rows end a section, and the row count. Columns with a
    lower `keep` are dropped first on a narrow terminal; case, fwd+bwd and speedup stay."""
    dtypes = sorted({c.dtype for c in report.cases if c.dtype})
    has_reference = any(c.reference for c in report.cases)
    case = Column("case", justify="left", wrap=True, min_width=14)
    dtype = Column("dtype", justify="left", keep=30)
    fwd, bwd = Column("fwd", keep=25), Column("bwd", keep=20)
    both = Column("fwd+bwd ±IQR")
    rate, peak, saved = Column("elem/s", keep=10), Column("peak", keep=40), Column("saved", keep=5)
    speedup, mem = Column("speedup"), Column("mem", keep=35)
    sections: list[int] = []
    rows = 0
    for item in report.cases:
        subjects: list[tuple[str, Any]] = [(item.case, item.function_result)]
        if item.reference and not item.error:
            subjects.append(("  ↳ reference", item.reference))
        for i, (label, subject) in enumerate(subjects):
            first = i == 0
            case.cells.append(label)
            dtype.cells.append(item.dtype if first else "")
            if item.error or subject is None:
                for column in (fwd, bwd, both, rate, peak, saved, speedup, mem):
                    column.cells.append(Text("error", style="bold magenta") if column is both else "")
                rows += 1
                continue
            fwd.cells.append(fmt_time(subject.forward))
            bwd.cells.append(fmt_time(subject.backward))
            both.cells.append(fmt_time(subject.forward_backward, spread=True))
            rate.cells.append(fmt_rate(item.throughput) if first else "")
            peak.cells.append(fmt_bytes(subject.peak_bytes))
            saved.cells.append(fmt_bytes(subject.saved_extra_bytes))
            speed, ratio = (item.speedup, item.memory_ratio) if first else (None, None)
            speedup.cells.append("" if not first else ("—" if speed is None else f"{speed:.2f}×"))
            mem.cells.append("" if not first else ("—" if ratio is None else f"{ratio:.2f}×"))
            rows += 1
        sections.append(rows - 1)
    # Case names stay whole where they can: figure columns are dropped before a name is folded.
    case.min_width = min(28, max((len(label) for label in map(str, case.cells)), default=14))
    columns = [case, *([dtype] if len(dtypes) > 1 else []), fwd, bwd, both, rate, peak, saved]
    if has_reference:
        columns += [speedup, mem]
    return columns, sections, rows


def noise_warnings(report: BenchReport) -> list[str]:
    """Figures the noise makes meaningless: a speedup inside both timings' spread, a scaling
    exponent over times that differ by less than their spread."""
    warnings = []
    for case in report.cases:
        if case.speedup is None or case.function_result is None or case.reference is None:
            continue
        mine, ref = case.function_result.forward_backward, case.reference.forward_backward
        if mine is None or ref is None or mine.median <= 0 or ref.median <= 0:
            continue
        spread = mine.iqr / mine.median + ref.iqr / ref.median
        if abs(case.speedup - 1) <= spread:
            warnings.append(
                f"{case.case}: speedup {case.speedup:.2f}× is within the timings' noise (±{spread:.0%}): "
                "no measurable difference"
            )
    for spec, k in report.scaling.items():
        timings = [
            c.function_result.forward_backward
            for c in report.cases
            if c.spec == spec and c.function_result and c.function_result.forward_backward
        ]
        if len(timings) < 2:
            continue
        medians = [t.median for t in timings]
        spread = max(t.iqr / t.median for t in timings if t.median > 0)
        if max(medians) / min(medians) - 1 <= 2 * spread:
            warnings.append(
                f"{spec}: the scaling exponent {k:.2f} is not meaningful: times across the sweep differ by "
                f"{max(medians) / min(medians) - 1:.0%}, within their noise (±{spread:.0%}); sweep larger sizes"
            )
    return warnings


def comparison_table(report: BenchReport) -> RenderableType:
    parts: list[RenderableType] = []
    if report.fingerprint_differences:
        parts.append(
            Text(
                "WARNING: the saved run's environment differs — timings are not comparable: "
                + "; ".join(report.fingerprint_differences),
                style="bold yellow",
            )
        )
    table = Table(title=f"against {report.compared_with}", header_style="bold")
    for column in ("case", "before", "after", "change", "noise band", "verdict"):
        # Only the case name may wrap: a figure is never cut.
        table.add_column(
            column,
            justify="left" if column in ("case", "verdict") else "right",
            no_wrap=column != "case",
            overflow="fold",
        )
    for c in report.comparisons:
        verdict = Text("SLOWER", style="bold red") if c.regressed else Text("ok", style="green")
        table.add_row(
            c.case,
            f"{c.before_s * 1e3:.3g} ms",
            f"{c.after_s * 1e3:.3g} ms",
            f"{c.change:+.1%}",
            f"±{c.noise_s * 1e3:.2g} ms",
            verdict,
        )
    if not report.comparisons:
        parts.append(Text("no case matches the saved run (compared by Function, case and dtype)", style="yellow"))
    else:
        parts.append(table)
    return Group(*parts)

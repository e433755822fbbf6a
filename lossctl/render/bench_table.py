"""`lossctl bench` output: a rich table of timings and memory, scaling, and a comparison."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from lossctl.bench import BenchReport, Timing
from lossctl.render.roofline_table import roofline_table


def fmt_time(timing: Timing | None, *, spread: bool = False) -> Text:
    if timing is None:
        return Text("—", style="dim")
    median, iqr = timing.median, timing.iqr
    scale, unit = (1e3, "ms") if median >= 1e-3 else (1e6, "µs")
    text = Text(f"{median * scale:.3g}{unit}" + (f" ±{iqr * scale:.2g}" if spread else ""))
    if timing.noisy:
        text.append(" ~", style="yellow")
    return text


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
            return f"{rate / size:.3g}{unit}"
    return f"{rate:.3g}"


def render(report: BenchReport, *, verbose: bool = False, **_: Any) -> RenderableType:
    table = Table(header_style="bold")
    dtypes = sorted({c.dtype for c in report.cases if c.dtype})
    columns = ["case", *(["dtype"] if len(dtypes) > 1 else []), "fwd", "bwd", "fwd+bwd ±IQR", "elem/s", "peak", "saved"]
    has_reference = any(c.reference for c in report.cases)
    if has_reference:
        columns += ["speedup", "mem"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("case", "dtype") else "right", no_wrap=True)
    for case in report.cases:
        if case.error:
            cells = [case.case, *([case.dtype] if len(dtypes) > 1 else []), Text(case.error, style="bold magenta")]
            table.add_row(*cells, *[""] * (len(columns) - len(cells)), end_section=True)
            continue
        subjects = [(case.case, case.function_result)]
        if case.reference:
            subjects.append(("  ↳ reference", case.reference))
        for i, (label, subject) in enumerate(subjects):
            assert subject is not None
            extra: list[Any] = []
            if has_reference:
                speedup, ratio = (case.speedup, case.memory_ratio) if i == 0 else (None, None)
                extra = [
                    "" if i else ("—" if speedup is None else f"{speedup:.2f}×"),
                    "" if i else ("—" if ratio is None else f"{ratio:.2f}"),
                ]
            table.add_row(
                label,
                *([case.dtype if i == 0 else ""] if len(dtypes) > 1 else []),
                fmt_time(subject.forward),
                fmt_time(subject.backward),
                fmt_time(subject.forward_backward, spread=True),
                fmt_rate(case.throughput) if i == 0 else "",
                fmt_bytes(subject.peak_bytes),
                fmt_bytes(subject.saved_extra_bytes),
                *extra,
                end_section=i == len(subjects) - 1,
            )
    parts: list[RenderableType] = [table]
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
    for spec, k in report.scaling.items():
        notes.append(f"{spec}: time ∝ elements^{k:.2f} over the sweep")
    parts.extend(Text(note, style="dim") for note in notes)
    if (against_limit := roofline_table(report)) is not None:
        parts.append(against_limit)
    if report.compared_with is not None:
        parts.append(comparison_table(report))
    fp = report.fingerprint
    parts.append(Text(f"torch {fp.torch} · {fp.device} ({fp.device_name}) · {fp.threads} threads · dtype {fp.dtype}"))
    if verbose:
        for case in report.errors:
            if case.traceback:
                parts.append(Text(f"\n{case.case}\n{case.traceback}", style="dim"))
    return Group(*parts)


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
        table.add_column(column, justify="left" if column in ("case", "verdict") else "right")
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

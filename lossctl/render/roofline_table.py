"""`lossctl bench`'s figures against the machine's limit: achieved GB/s and FLOP/s, % of roofline."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from lossctl.bench import BenchReport
from lossctl.roofline import Figures


def fmt_si(value: float, unit: str) -> str:
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def fmt_percent(figures: Figures | None) -> Text:
    if figures is None:
        return Text("—", style="dim")
    percent = 100 * figures.fraction
    text = f"{percent:.2g}%" if percent < 10 else f"{percent:.0f}%"
    # Above 100%: the working set stayed in cache, which is faster than the large copy the limit
    # was measured with; the figure is a rate, not a claim of beating the hardware.
    return Text(f"{text}*", style="yellow") if percent > 100 else Text(text)


def roofline_table(report: BenchReport) -> RenderableType | None:
    """A table of each case's rates against the measured limits, or None when there are none."""
    limits = report.limits
    if limits is None:
        return None
    table = Table(
        title="against the machine's limit: % of roofline", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in ("case", "fwd", "bwd", "fwd+bwd", "GB/s", "FLOP/s", "bound"):
        table.add_column(column, justify="left" if column in ("case", "bound") else "right", no_wrap=column != "case")
    above_roofline = False
    for case in report.cases:
        by_subject = case.against(limits)
        if case.error or not by_subject:
            continue
        rows = [(case.case, by_subject.get("function"))]
        if "reference" in by_subject:
            rows.append(("  ↳ reference", by_subject["reference"]))
        for i, (label, phases) in enumerate(rows):
            phases = phases or {}
            above_roofline = above_roofline or any(f is not None and f.fraction > 1 for f in phases.values())
            total = phases.get("forward_backward") or phases.get("forward")
            table.add_row(
                label,
                fmt_percent(phases.get("forward")),
                fmt_percent(phases.get("backward")),
                fmt_percent(phases.get("forward_backward")),
                f"{total.bytes_per_s / 1e9:.3g}" if total else "—",
                fmt_si(total.flops_per_s, "").strip() if total and total.flops else "—",
                total.bound if total else "",
                end_section=i == len(rows) - 1,
            )
    if not table.rows:
        return None
    rates = ", ".join(f"{dtype} {fmt_si(rate, 'FLOP/s')}" for dtype, rate in sorted(limits.matmul.items()))
    source = f"cached in {limits.cache_path}" if limits.cache_path else "not cached"
    notes = [
        "fwd, bwd, fwd+bwd: roofline time ÷ median; GB/s, FLOP/s and bound: of fwd+bwd (bytes and FLOPs in JSON)",
        "roofline time = max(bytes ÷ bandwidth, FLOPs ÷ matmul rate): inputs read once, outputs and gradients "
        "written once; FLOPs of matrix products only (torch.utils.flop_counter), the fewer of fn and ref",
        f"measured {limits.measured_at or 'now'}: copy {limits.bandwidth / 1e9:.3g} GB/s"
        + (f", matmul {rates}" if rates else "")
        + f" ({source}; --no-cache measures again)",
    ]
    if above_roofline:
        notes.append(
            "*: above the measured roofline: the data stayed in cache (the limit is a large copy), or the limits "
            "were measured on a busier machine (--no-cache measures again)"
        )
    return Group(table, *(Text(note, style="dim") for note in notes))

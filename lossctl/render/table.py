"""The human report: a rich table of case × check, a summary line, and details on request."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lossctl.budget import plan_line
from lossctl.render.heatmap import render_heatmap
from lossctl.report import SETUP, CaseResult, CheckResult, Report, Status

STYLES = {
    Status.PASSED: "green",
    Status.FAILED: "bold red",
    Status.ERROR: "bold magenta",
    Status.SKIPPED: "yellow",
}


def render(
    report: Report, *, verbose: bool = False, quiet: bool = False, width: int | None = None, **_: Any
) -> RenderableType:
    """Default: one line per case and the failures (render/compact.py); `verbose`: the full table
    of case × check with explanations and tracebacks."""
    if not verbose:
        from lossctl.render import compact

        return compact.render(report, quiet=quiet, width=width)
    parts: list[RenderableType] = [results_table(report)]
    notes = [note for case in report.cases for note in case.notes]
    for note in dict.fromkeys(notes):  # once each, in order
        parts.append(Text(f"note: {note}", style="dim"))
    parts.extend(details(report, verbose=verbose))
    parts.extend(Text(line, style="dim") for case in report.cases if (line := plan_line(case)))
    parts.extend(Text(line, style="dim") for case in report.cases if (line := resources_line(case)))
    parts.append(summary(report))
    return Group(*parts)


def resources_line(case: CaseResult) -> str | None:
    """`case: checks 41.2 s of a 60 s budget, one forward+backward 0.31 s (133×), peak RSS 1.7 GB
    (+1.2 GB = 7.7× the inputs (160 MB), 3.1× one forward+backward's +390 MB); worst check
    gradient_scaled +1.1 GB`."""
    r = case.resources
    if not r:
        return None
    parts = [f"checks {r['checks_s']:.1f} s of a {r['budget_s']:g} s budget"]
    if (unit := r.get("forward_backward_s")) is not None:
        times = f" ({r['checks_s'] / unit:.0f}×)" if unit > 0 else ""
        parts.append(f"one forward+backward {unit:.3g} s{times}")
    if (memory := memory_text(case)) is not None:
        parts.append(memory)
    return f"{case.case}: {', '.join(parts)}"


def memory_text(case: CaseResult) -> str | None:
    """The case's peak memory in words: absolute, above its start, as multiples, and its worst check."""
    r = case.resources
    cuda = "peak_cuda_mb" in r
    peak = r.get("peak_cuda_mb" if cuda else "peak_rss_mb")
    if peak is None:
        return None
    kind = "peak CUDA memory" if cuda else "peak RSS"
    if not cuda and not r.get("peak_rss_per_case", 1.0):
        return f"{kind} {fmt_mb(peak)} (the process's so far: earlier cases included)"
    text = f"{kind} {fmt_mb(peak)}"
    above = r.get("peak_above_baseline_mb")
    if above is not None:
        multiples = []
        if "peak_x_inputs" in r:  # large cases only: a toy case's ratio is RSS granularity
            multiples.append(f"{r['peak_x_inputs']:.1f}× the inputs ({fmt_mb(r['inputs_mb'])})")
        if (unit := r.get("forward_backward_peak_mb")) is not None and "peak_x_forward_backward" in r:
            multiples.append(f"{r['peak_x_forward_backward']:.1f}× one forward+backward's +{fmt_mb(unit)}")
        text += f" (+{fmt_mb(above)}" + (f" = {', '.join(multiples)}" if multiples else "") + ")"
    worst = max((c for c in case.checks if c.peak_mb is not None), key=lambda c: c.peak_mb or 0.0, default=None)
    if worst is not None and worst.peak_mb is not None:
        text += f"; worst check {worst.check} +{fmt_mb(worst.peak_mb)}"
    return text


def fmt_mb(mb: float) -> str:
    """`912 MB`, `1.7 GB`."""
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def results_table(report: Report) -> Table:
    table = Table(show_lines=False, header_style="bold", expand=False)
    # Only the detail column wraps: ids, statuses and figures stay whole at any width.
    table.add_column("case", overflow="fold", max_width=24)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    table.add_column("ms", justify="right", no_wrap=True)
    for case in report.cases:
        for i, check in enumerate(case.checks):
            table.add_row(
                case.case if i == 0 else "",
                check.check,
                Text(check.status.value.upper(), style=STYLES[check.status]),
                _detail_cell(check),
                "" if check.check == SETUP else f"{check.duration_ms:.1f}",
                end_section=i == len(case.checks) - 1,
            )
    return table


def _detail_cell(check: CheckResult) -> Text:
    text = Text(check.detail)
    if check.hint and check.status.is_problem:
        text.append(f"\n→ {check.hint}", style="cyan")
    return text


def details(report: Report, *, verbose: bool) -> list[RenderableType]:
    """What lies behind problem rows: the user's tracebacks from setup (always), and with
    `verbose` long explanations and tracebacks from checks."""
    parts: list[RenderableType] = []
    for case, check in report.results():
        if not check.status.is_problem or not (check.explain or check.traceback):
            continue
        if not verbose and check.check != SETUP:
            continue
        parts.append(Text(f"\n{case.case} · {check.check} · {check.status.value.upper()}", style="bold"))
        if check.explain:
            parts.append(Text(_clip_lines(check.explain)))
        for mismatch in check.data.get("mismatches", ()):
            if mismatch.get("heatmap"):
                title = f"|expected − got| for `{mismatch['argument']}`"
                parts.append(render_heatmap(mismatch["heatmap"], title))
        if check.traceback:
            parts.append(Text(check.traceback, style="dim"))
    return parts


EXPLAIN_LINES = 40
"""Past this many lines an explanation (gradgradcheck prints whole Jacobians) is cut; the JSON
report keeps it whole."""


def _clip_lines(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= EXPLAIN_LINES:
        return text
    rest = len(lines) - EXPLAIN_LINES
    return "\n".join([*lines[:EXPLAIN_LINES], f"… {rest} more lines in the JSON report (--format json)"])


def summary(report: Report) -> Text:
    counts = report.counts()
    total_ms = sum(c.duration_ms for _, c in report.results())
    words = [
        f"{counts[Status.PASSED]} passed",
        f"{counts[Status.FAILED]} failed",
        f"{counts[Status.ERROR]} error{'s' * (counts[Status.ERROR] != 1)}",
        f"{counts[Status.SKIPPED]} skipped",
    ]
    cases = len(report.cases)
    env = report.environment
    verdict = ("OK", "bold green") if report.ok else ("FAILED", "bold red")
    if report.interrupted:  # an OK over the cases that finished would claim the rest passed
        verdict = ("INTERRUPTED", "bold yellow")
    text = Text(f"{verdict[0]}", style=verdict[1])
    text.append(
        f"  {', '.join(words)} · {cases} case{'s' * (cases != 1)} · {total_ms / 1e3:.2f} s of checks · "
        f"{escape(env.device)} · torch {env.torch}"
    )
    return text

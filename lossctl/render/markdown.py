"""A Markdown summary fit for a pull-request comment or GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from typing import Any

from lossctl.report import Report, Status

ICONS = {Status.PASSED: "✅", Status.FAILED: "❌", Status.ERROR: "💥", Status.SKIPPED: "⏭️"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: Report, **_: Any) -> str:
    counts = report.counts()
    verdict = "✅ all checks passed" if report.ok else "❌ checks failed"
    lines = [
        f"## lossctl: {verdict}",
        "",
        f"{counts[Status.PASSED]} passed · {counts[Status.FAILED]} failed · {counts[Status.ERROR]} errors · "
        f"{counts[Status.SKIPPED]} skipped · {len(report.cases)} case{'s' * (len(report.cases) != 1)} · "
        f"torch {report.environment.torch} · "
        f"{report.environment.device}",
        "",
        "| case | Function | passed | failed | errors | skipped |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in report.cases:
        tally = {s: sum(c.status is s for c in case.checks) for s in Status}
        lines.append(
            f"| {ICONS[case.status]} {_cell(case.case)} | `{_cell(case.function)}` | {tally[Status.PASSED]} | "
            f"{tally[Status.FAILED]} | {tally[Status.ERROR]} | {tally[Status.SKIPPED]} |"
        )
    problems = [(case, check) for case, check in report.results() if check.status.is_problem]
    if problems:
        lines += ["", "### Failures", "", "| case | check | status | detail |", "|---|---|---|---|"]
        for case, check in problems:
            detail = check.detail + (f" — *{check.hint}*" if check.hint else "")
            lines.append(f"| {_cell(case.case)} | `{check.check}` | {check.status.value} | {_cell(detail)} |")
    if report.interrupted:
        lines += ["", "*Interrupted: only the cases that finished are listed.*"]
    return "\n".join(lines) + "\n"

"""The default human report, like pytest's: one line per case, failures expanded, a totals line.

Every line is wrapped to the console's width at spaces, so a figure is never cut.
"""

from __future__ import annotations

import textwrap

from rich.console import Group, RenderableType
from rich.text import Text

from lossctl.findings import Finding, case_findings
from lossctl.paths import relative_path
from lossctl.report import INVALID_SPEC, SETUP, VERIFIED, CaseResult, Report, Status

MARKS = {
    Status.PASSED: ("✓", "green"),
    Status.SKIPPED: ("-", "yellow"),
    Status.FAILED: ("✗", "bold red"),
    Status.ERROR: ("✗", "bold magenta"),
}
DEFAULT_WIDTH = 80
MAX_WIDTH = 100
"""Wider terminals get 100 columns: a case line stays readable at a glance."""


def render(report: Report, *, quiet: bool = False, width: int | None = None) -> RenderableType:
    """Case lines (not with `quiet`), the failures, a short summary of them and the totals."""
    width = min(max(40, width or DEFAULT_WIDTH), MAX_WIDTH)
    lines: list[Text] = []
    if not quiet:
        lines.append(header(report))
        lines.extend(case_line(case, width) for case in report.cases)
    failed = [(case, case_findings(case)) for case in report.cases if case.status.is_problem]
    if failed:
        if lines:
            lines.append(Text(""))
        lines.append(_rule("failures", width))
        for case, findings in failed:
            lines.extend(_case_failures(case, findings, width))
        lines.append(_rule("short summary", width))
        for case, findings in failed:
            for finding in findings:
                lines.extend(_summary_lines(case, finding, width))
    notes = dict.fromkeys(note for case in report.cases for note in case.notes)
    # An opted-out case passes, but the run still says that no gradient value was verified.
    notes.update(
        dict.fromkeys(
            f"{case.case}: {check.detail}"
            for case in report.cases
            for check in case.checks
            if check.check == VERIFIED and check.status is Status.SKIPPED
        )
    )
    if notes and not quiet:
        lines.append(Text(""))
        for note in notes:
            lines.extend(_wrapped(f"note: {note}", width, indent="  ", style="dim"))
    lines.append(totals(report, width))
    return Group(*lines)


def case_line(case: CaseResult, width: int) -> Text:
    mark, style = MARKS[case.status]
    right = f"{_counts(case)}  {_duration(sum(c.duration_ms for c in case.checks)):>7}"
    left = f"{mark} {case.case}"
    text = Text(mark, style=style)
    text.append(f" {case.case}")
    gap = width - len(left) - len(right)
    if gap >= 2:
        text.append(" " * gap + right, style="dim" if case.status is Status.PASSED else "")
    else:  # a long case name: the figures go on their own line, whole
        text.append("\n" + right.rjust(width), style="dim")
    return text


def header(report: Report) -> Text:
    """Where the run happened, like pytest's first line."""
    env = report.environment
    return Text(
        f"lossctl · torch {env.torch} · {env.device} · {_plural(env.threads, 'thread')} · "
        f"{_plural(len(report.cases), 'case')}",
        style="dim",
    )


def totals(report: Report, width: int) -> Text:
    """One line: cases by outcome, checks by status, time."""
    by_status = dict.fromkeys(Status, 0)
    for case in report.cases:
        by_status[case.status] += 1
    invalid = sum(1 for case in report.cases if _is_invalid_spec(case))
    by_status[Status.ERROR] -= invalid
    cases = [f"{n} {word}" for word, n in _case_words(by_status) if n]
    if invalid:
        cases.append(f"{invalid} invalid spec{'s' * (invalid != 1)}")
    counts = report.counts()
    counts[Status.ERROR] -= invalid
    shown = (Status.FAILED, Status.ERROR) if counts[Status.FAILED] or counts[Status.ERROR] else tuple(Status)
    checks = ", ".join(
        _plural(counts[s], "error") if s is Status.ERROR else f"{counts[s]} {s.value}" for s in shown if counts[s]
    )
    seconds = sum(c.duration_ms for _, c in report.results()) / 1e3
    if report.interrupted:  # what finished may all have passed: the run itself did not
        verdict, style = "INTERRUPTED", "bold yellow"
    else:
        verdict, style = ("OK", "bold green") if report.ok else ("FAILED", "bold red")
    body = f"{', '.join(cases) or 'nothing ran'} · checks: {checks or 'none ran'} · {seconds:.2f} s"
    lines = _wrapped(f"{verdict} {body}", width, indent="")
    text = Text(verdict, style=style)
    text.append(str(lines[0])[len(verdict) :])
    for line in lines[1:]:
        text.append("\n" + str(line))
    return text


def _case_words(by_status: dict[Status, int]) -> list[tuple[str, int]]:
    return [
        ("failed", by_status[Status.FAILED]),
        ("errors" if by_status[Status.ERROR] != 1 else "error", by_status[Status.ERROR]),
        ("passed", by_status[Status.PASSED]),
        ("skipped", by_status[Status.SKIPPED]),
    ]


def _case_failures(case: CaseResult, findings: tuple[Finding, ...], width: int) -> list[Text]:
    mark, style = MARKS[case.status]
    head = Text(mark, style=style)
    head.append(f" {case.case}", style="bold")
    where = _source(case)
    if where:
        head.append(f"  (backward at {where})", style="dim")
    lines = [head]
    for finding in findings:
        title = finding.title
        if len(finding.checks) > 1:
            title += f" — seen by {finding.seen_by}"
        elif finding.title not in finding.checks and finding.checks[0] not in (SETUP, INVALID_SPEC):
            title += f" ({finding.checks[0]})"
        if finding.checks[0] == INVALID_SPEC:
            title = "invalid spec (any valid specs still ran)"
        label = "ERROR" if finding.status is Status.ERROR else "FAILED"
        lines.extend(_wrapped(f"{label} {title}", width, indent="  ", style=STYLE_BY_STATUS[finding.status]))
        lines.extend(_wrapped(finding.detail, width, indent="    "))
        if finding.hint:
            lines.extend(_wrapped(f"hint: {finding.hint}", width, indent="    ", style="cyan"))
        if finding.traceback and finding.checks[0] == SETUP:
            lines.append(Text(textwrap.indent(finding.traceback.rstrip(), "    "), style="dim"))
    return lines


STYLE_BY_STATUS = {Status.FAILED: "red", Status.ERROR: "magenta", Status.PASSED: "", Status.SKIPPED: ""}


def _summary_lines(case: CaseResult, finding: Finding, width: int) -> list[Text]:
    label = "ERROR" if finding.status is Status.ERROR else "FAILED"
    if _is_invalid_spec(case) or finding.checks[0] == SETUP:
        where = "" if _is_invalid_spec(case) else f"{case.case} · "  # a spec error names its file
        line = _shorten(f"{label} {where}{finding.detail.splitlines()[0]}", width - 2)
        return _wrapped(line, width, indent="  ", first_style=STYLE_BY_STATUS[finding.status])
    what = finding.title if len(finding.checks) == 1 else f"{finding.title} ({finding.seen_by})"
    line = f"{label} {case.case} · {what}"
    if len(finding.checks) == 1:  # the first words of the message, cut at a space: figures stay whole
        line = _shorten(f"{line}: {finding.detail.splitlines()[0] if finding.detail else ''}", width - 2)
    return _wrapped(line, width, indent="  ", first_style=STYLE_BY_STATUS[finding.status])


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:·") + "…"


def _is_invalid_spec(case: CaseResult) -> bool:
    return any(check.check == INVALID_SPEC for check in case.checks)


def _counts(case: CaseResult) -> str:
    if _is_invalid_spec(case):
        return "invalid spec"
    if any(check.check == SETUP for check in case.checks):
        return "setup error"
    counts = dict.fromkeys(Status, 0)
    for check in case.checks:
        counts[check.status] += 1
    order = (Status.FAILED, Status.ERROR, Status.PASSED, Status.SKIPPED)
    return ", ".join(
        _plural(counts[s], "error") if s is Status.ERROR else f"{counts[s]} {s.value}" for s in order if counts[s]
    )


def _duration(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _source(case: CaseResult) -> str | None:
    if not case.source_file:
        return None
    return (
        f"{relative_path(case.source_file)}:{case.source_line}" if case.source_line else relative_path(case.source_file)
    )


def _rule(title: str, width: int) -> Text:
    return Text(f" {title} ".center(width, "="), style="bold")


def _wrapped(text: str, width: int, *, indent: str, style: str = "", first_style: str | None = None) -> list[Text]:
    """`text` wrapped at spaces to `width` (words are never split), continuation lines indented
    two more."""
    out: list[Text] = []
    for paragraph in text.splitlines() or [""]:
        wrapped = textwrap.wrap(
            paragraph,
            width=width,
            initial_indent=indent,
            subsequent_indent=indent + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        ) or [indent]
        out.extend(Text(line, style=style) for line in wrapped)
    if first_style is not None and out:
        line = str(out[0])
        stripped = line.lstrip()
        first_word = stripped.split(" ", 1)[0]
        styled = Text(line[: len(line) - len(stripped)])
        styled.append(first_word, style=first_style)
        styled.append(stripped[len(first_word) :])
        out[0] = styled
    return out

"""Root causes from a report: failing checks that share one gradient error become one finding.

Pure functions over the report's plain data; the renderers decide how a finding looks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lossctl.report import SETUP, CaseResult, CheckResult, Report, Status

GRADIENT_CHECKS = ("gradcheck", "gradient_scaled", "edge_sizes", "double_backward", "needs_input_grad")
"""Checks that compare a gradient with a numerical one: one wrong backward trips several of them."""


@dataclass(frozen=True)
class Finding:
    """One problem in one case, with every check that saw it."""

    case: str
    status: Status
    title: str
    """What is wrong, e.g. "wrong gradient for `z2`" or the one check's id."""
    checks: tuple[str, ...]
    """The checks that saw it; the first one's detail and hint describe it."""
    detail: str
    hint: str | None
    traceback: str | None = None

    @property
    def seen_by(self) -> str:
        return ", ".join(self.checks)


def case_findings(case: CaseResult) -> tuple[Finding, ...]:
    """The problems of one case, each root cause once, in the order their first check ran."""
    problems = [check for check in case.checks if check.status.is_problem]
    wrong = _wrong_arguments(problems)
    grouped: list[CheckResult] = []
    if wrong:
        grouped = [
            check
            for check in problems
            if check.check in GRADIENT_CHECKS
            and check.status is Status.FAILED
            and (not _arguments(check) or _arguments(check) & wrong)
        ]
    findings: list[Finding] = []
    for check in problems:
        if check in grouped:
            if check is grouped[0]:
                names = ", ".join(f"`{name}`" for name in sorted(wrong))
                findings.append(
                    Finding(
                        case=case.case,
                        status=Status.FAILED,
                        title=f"wrong gradient for {names}",
                        checks=tuple(c.check for c in grouped),
                        detail=check.detail,
                        hint=next((c.hint for c in grouped if c.hint), None),
                    )
                )
            continue
        title = "could not set up" if check.check == SETUP else check.check
        findings.append(
            Finding(case.case, check.status, title, (check.check,), check.detail, check.hint, check.traceback)
        )
    return tuple(findings)


def report_findings(report: Report) -> tuple[Finding, ...]:
    """Every case's findings, in case order."""
    return tuple(finding for case in report.cases for finding in case_findings(case))


def _arguments(check: CheckResult) -> set[str]:
    """The arguments whose gradient a check found wrong (from its data)."""
    names = {m.get("argument") for m in check.data.get("mismatches", ()) if isinstance(m, dict)}
    if isinstance(check.data.get("argument"), str):
        names.add(check.data["argument"])
    return {name for name in names if isinstance(name, str)}


def _wrong_arguments(problems: Iterable[CheckResult]) -> set[str]:
    """Arguments named wrong by gradcheck or gradient_scaled, the checks that localise an error."""
    named: set[str] = set()
    for check in problems:
        if check.check in ("gradcheck", "gradient_scaled") and check.status is Status.FAILED:
            named |= _arguments(check)
    return named

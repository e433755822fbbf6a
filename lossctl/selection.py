"""Which cases run: `-k EXPR` on case names, `--lf` from the last run's failures, and invalid
spec files turned into report rows so the valid specs still run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from lossctl.errors import SpecError, UsageError
from lossctl.report import INVALID_SPEC, CaseResult, CheckResult, Report, Status
from lossctl.spec import Spec, sweep

T = TypeVar("T")

CACHE_DIR = ".lossctl_cache"
LAST_FAILED = "lastfailed.json"


def case_id(spec: Spec, point: int) -> str:
    """The id a case gets in the report (the runner names cases the same way)."""
    at = sweep(spec)[point]
    return f"{spec.name}[{at.label()}]" if at.swept else spec.name


def case_key(spec_source: str | None, function: str, case: str) -> str:
    """A case's identity across runs: its spec file (or Function) and its id."""
    return f"{spec_source or function}::{case}"


# --------------------------------------------------------------------------- -k EXPR


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def keyword_matcher(expression: str) -> Callable[[str], bool]:
    """pytest's -k language on case names: substrings (case-insensitive) joined by `and`, `or`,
    `not` and parentheses."""
    tokens = _TOKEN.findall(expression)
    if not tokens:
        raise UsageError("-k: the expression is empty", hint="e.g. -k 'CrossEntropy and not N=1'")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = peek()
        if token is None:
            raise UsageError(f"-k `{expression}`: the expression ends too early")
        position += 1
        return token

    def parse_or() -> Callable[[str], bool]:
        left = parse_and()
        while peek() == "or":
            take()
            right, first = parse_and(), left
            left = lambda name, a=first, b=right: a(name) or b(name)  # noqa: E731
        return left

    def parse_and() -> Callable[[str], bool]:
        left = parse_not()
        while peek() == "and":
            take()
            right, first = parse_not(), left
            left = lambda name, a=first, b=right: a(name) and b(name)  # noqa: E731
        return left

    def parse_not() -> Callable[[str], bool]:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda name: not inner(name)
        token = take()
        if token == "(":
            inner = parse_or()
            if take() != ")":
                raise UsageError(f"-k `{expression}`: a `(` is not closed")
            return inner
        if token in (")", "and", "or"):
            raise UsageError(f"-k `{expression}`: unexpected `{token}`")
        word = token.lower()
        return lambda name: word in name.lower()

    matcher = parse_or()
    if peek() is not None:
        raise UsageError(f"-k `{expression}`: unexpected `{peek()}`")
    return matcher


# --------------------------------------------------------------------------- --lf


def read_last_failed(root: Path) -> set[str] | None:
    """The case keys that failed last time, or None when no run was recorded."""
    path = root / CACHE_DIR / LAST_FAILED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    failed = data.get("failed") if isinstance(data, dict) else None
    return {str(key) for key in failed} if isinstance(failed, list) else None


def update_last_failed(root: Path, report: Report) -> None:
    """Record this run's failures: cases that now pass leave the list, failing ones join it
    (as pytest's cache does, so a partial run keeps what it did not run)."""
    before = read_last_failed(root) or set()
    ran = {case_key(c.source, c.function, c.case): c.status.is_problem for c in report.cases}
    failed = {key for key in before if ran.get(key, True)} | {key for key, bad in ran.items() if bad}
    folder = root / CACHE_DIR
    try:
        folder.mkdir(exist_ok=True)
        (folder / ".gitignore").write_text("# created by lossctl\n*\n", encoding="utf-8")
        (folder / LAST_FAILED).write_text(json.dumps({"failed": sorted(failed)}, indent=1) + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only checkout: --lf then reruns everything, which is safe


# --------------------------------------------------------------------------- invalid specs


def invalid_spec_results(errors: Iterable[SpecError], device: str) -> tuple[CaseResult, ...]:
    """One ERROR row per spec file that is not valid, named for the file."""
    results = []
    for error in errors:
        source = error.source or "<spec>"
        check = CheckResult(
            check=INVALID_SPEC, status=Status.ERROR, detail=error.message, duration_ms=0.0, hint=error.hint
        )
        results.append(
            CaseResult(
                case=source,
                spec=Path(source).name,
                function="",
                source=source,
                dims={},
                seed=0,
                device=device,
                checks=(check,),
            )
        )
    return tuple(results)


def count_invalid(report: Report) -> int:
    return sum(1 for case in report.cases if any(c.check == INVALID_SPEC for c in case.checks))


def select_tasks(tasks: Sequence[T], *, keyword: str | None, only: Collection[str] | None) -> list[T]:
    """The tasks (runner.Task: `.job.spec`, `.point`) whose case id matches `keyword` and, with
    `only` (--lf), whose case key is in it — or all of them when none of these failed last time
    (as pytest's --lf: a selection that matches nothing must not pass silently)."""
    match = keyword_matcher(keyword) if keyword else None
    matching = []
    for task in tasks:
        spec = task.job.spec  # type: ignore[attr-defined]
        name = case_id(spec, task.point)  # type: ignore[attr-defined]
        if match is None or match(name):
            matching.append((task, case_key(spec.source, spec.function, name)))
    failed_before = [task for task, key in matching if only is not None and key in only]
    return failed_before if failed_before else [task for task, _ in matching]

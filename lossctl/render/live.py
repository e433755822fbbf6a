"""The live status on a terminal while `lossctl check` runs: each running case, the check it is in,
and its time against its budget, recomputed whenever rich redraws it (so it moves while a check runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text

from lossctl.activity import CheckStarted


def status_lines(running: Sequence[CheckStarted], cases_done: int, now: float) -> list[str]:
    """The status text: one line while at most one case runs, else a header and one line per case."""
    done = [f"{cases_done} case{'s' * (cases_done != 1)} done"] if cases_done else []
    lines = [_line(step, now) for step in sorted(running, key=lambda s: s.case_started)]
    if len(lines) <= 1:
        return [("checking… " + " · ".join([*done, *lines])).rstrip()]
    return [("checking… " + " · ".join(done)).rstrip(), *(f"  {line}" for line in lines)]


def _line(step: CheckStarted, now: float) -> str:
    elapsed = max(now - step.case_started, 0.0)
    shown = f"{elapsed:.1f}" if elapsed < 10 else f"{elapsed:.0f}"
    return f"{step.case} · {step.check} · {shown} s / {step.budget_s:g} s budget"


class LiveStatus:
    """What the CLI hands rich's status spinner: the running cases, told by the runner's callbacks
    (`started`, `finished`), drawn at each refresh. The callbacks run on the main thread while rich
    draws from its own: both only swap whole entries of a dict."""

    def __init__(self) -> None:
        self.running: dict[str, CheckStarted] = {}
        self.seen: set[str] = set()

    def started(self, step: CheckStarted) -> None:
        self.running[step.case] = step

    def finished(self, case: str, result: object) -> None:
        """A check's row came in: in-process, the case goes on with its next check; from a worker,
        the whole case has finished."""
        self.running.pop(case, None)
        self.seen.add(case)

    def lines(self, now: float) -> list[str]:
        running = list(self.running.values())
        done = len(self.seen - {step.case for step in running})
        return status_lines(running, done, now)

    def __rich__(self) -> Text:
        return Text("\n".join(self.lines(time.monotonic())))

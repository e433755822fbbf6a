"""Time limits for cases (SIGALRM in-process; a worker's parent kills it), what a timeout says, and
workers that die with their parent."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from lossctl import activity
from lossctl.activity import Activity, CheckStarted, Where

MAX_ALARM_SECONDS = 1e8
"""setitimer overflows time_t past ~1e11 s; three years is no limit anyway."""

STILL_WORKING_S = 1.0
"""The case was making progress when the limit came if a call into the Function returned within 3 of
the check's typical intervals between returns, or within this many seconds (at most a tenth of the
time in the check: a hang at a 1 s limit must not pass for progress) — slack for a busy machine."""


class CaseTimeout(BaseException):
    """Raised into the user's Python code when a case passes its time limit. A BaseException, so
    the user's `except Exception:` does not swallow it."""

    def __init__(self, message: str, started: float, at: float):
        self.at = at
        """Monotonic time the limit came."""
        self.elapsed_ms = (at - started) * 1e3
        super().__init__(message)


def timeout_message(
    limit_s: float,
    check: str | None,
    in_check_s: float,
    in_case_s: float,
    finished: Sequence[str],
    seen: Activity | None,
    where: Where | None,
    now: float,
) -> str:
    """What a timeout says, in a worker's parent and in-process alike: the check it cut short, the
    seconds spent in it and in the case, the checks that had finished, and whether the case was making
    progress (calls into the Function kept returning: it needs more time) or stuck (where: the Function
    hangs there). `where`: the stack's answer (None: none could be had)."""
    if check is None:
        return (
            f"timed out after {limit_s:g} s before its first check, while loading the Function and building its "
            "inputs (an import, a constructor or the input code hangs, or needs more time: raise --timeout)"
        )
    done = f"finished: {', '.join(finished)}" if finished else "no check had finished"
    head = (
        f"timed out after {limit_s:g} s in `{check}` ({in_check_s:.1f} s in it, {in_case_s:.1f} s in the case; {done})"
    )
    if seen is None:
        return f"{head}: the Function hangs there, or the case needs more time — raise --timeout"
    return f"{head}: {_verdict(check, seen, where, now, in_check_s)}"


NEEDS_MORE_TIME = "the case needs more time — raise --timeout, or lower --budget"


def _verdict(check: str, seen: Activity, where: Where | None, now: float, in_check_s: float) -> str:
    calls = seen.forward_returns
    last = seen.last_return if seen.last_return is not None else seen.check_started
    quiet = max(now - last, 0.0)
    pace = (last - seen.check_started) / calls if calls else None
    so_far = f"{calls} call{'s' * (calls != 1)} in `{check}`"
    silent = f"no call into the Function returned in the last {_span(quiet)}"
    if pace is not None and quiet <= max(3 * pace, min(STILL_WORKING_S, 0.1 * in_check_s)):
        return (
            f"was making progress: {calls} call{'s' * (calls != 1)} into the Function in `{check}`, the last "
            f"{_span(quiet)} before the limit: {NEEDS_MORE_TIME}"
        )
    if where is None and seen.last_event == activity.IN_FORWARD:
        where = Where("forward")
    if where is None:  # no stack to read, and not in forward
        return (
            f"{silent}, after {so_far}: it hangs in backward, or the check's own work needs more time — raise --timeout"
        )
    if where.phase == "check":
        at = f" ({where.place})" if where.place else ""
        return f"{silent}, after {so_far}: the time went to the check's own work{at}: {NEEDS_MORE_TIME}"
    if where.phase == "native":
        stuck = f"{silent}: it is inside native code that does not return to Python (the worker did not answer)"
    else:
        stuck = f"{silent}: it is in {where.phase}" + (f", at {where.place}" if where.place else "")
    if pace is None:
        return (
            f"{stuck}, and none had in `{check}`: the Function hangs there, or one call takes longer than that "
            "— raise --timeout to tell"
        )
    took = f"returned in {_span(pace)}" if calls == 1 else f"{_span(pace)} each"
    if where.phase != "forward":
        # only forward calls are timed: how long a backward (or a native call) should take is unknown
        return (
            f"{stuck}, after {so_far} (forward {took}): the Function hangs there, or that call takes "
            "longer than that — raise --timeout to tell"
        )
    return f"{stuck}, after {so_far} ({took}): the Function hangs there"


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms" if seconds >= 1e-3 else "under 1 ms"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


@dataclass
class CaseWatch:
    """What the watcher of one running case knows: when it began, the check it is in, the rows of the
    checks that finished, and where the Function's activity is recorded."""

    started: float
    slots: activity.Slots
    step: CheckStarted | None = None
    finished: list[Any] = field(default_factory=list)
    """The finished checks' rows (report.CheckResult), kept when the case times out."""

    def start(self, step: CheckStarted) -> None:
        self.step = step

    def done(self, result: Any) -> None:
        self.finished.append(result)

    @property
    def check(self) -> str | None:
        return self.step.check if self.step is not None else None

    def seconds_in_check(self, now: float) -> float:
        return now - self.step.at if self.step is not None else now - self.started

    def unaccounted_ms(self, now: float) -> float:
        """The case's time so far less its finished rows': the cut-short row's, so the rows add up to
        the time the case took."""
        return max((now - self.started) * 1e3 - sum(row.duration_ms for row in self.finished), 0.0)

    def timeout_message(self, limit_s: float, now: float, where: Where | None) -> str:
        check = self.check
        finished = [row.check for row in self.finished if row.check != check]
        seen = activity.read(self.slots) if check is not None else None
        in_check, in_case = self.seconds_in_check(now), now - self.started
        return timeout_message(limit_s, check, in_check, in_case, finished, seen, where, now)


def can_interrupt() -> bool:
    """Whether this process can interrupt a running case: SIGALRM exists and this is the main thread."""
    return (
        hasattr(signal, "SIGALRM")
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )


@contextlib.contextmanager
def deadline(
    seconds: float | None, describe: Callable[[float, float, Where | None], str] | None = None
) -> Iterator[None]:
    """Raise CaseTimeout in the code running under this block after `seconds`, with the message
    `describe(seconds, now, where the code stood)` makes at that moment. A no-op where it cannot work
    (no SIGALRM, another thread) or where someone else owns SIGALRM (pytest-timeout). Native code that
    never returns to Python is only interrupted when it does: use workers (-j 1) for hard limits."""
    if not seconds or not can_interrupt() or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return
    started = time.monotonic()

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        message = describe(seconds, now, activity.locate(frame)) if describe else f"timed out after {seconds:g} s"
        raise CaseTimeout(message, started, now)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, MAX_ALARM_SECONDS))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this worker die when lossctl dies (kill -9, SIGTERM, a crash), even mid-way through a
    Function that never returns: Linux's parent-death signal; elsewhere the closed pipe ends it
    between cases."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:  # the parent may have died before the signal was armed
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass

"""Time limits for cases run in this process (SIGALRM), and workers that die with their parent."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

MAX_ALARM_SECONDS = 1e8
"""setitimer overflows time_t past ~1e11 s; three years is no limit anyway."""


class CaseTimeout(BaseException):
    """Raised into the user's Python code when a case passes its time limit. A BaseException, so
    the user's `except Exception:` does not swallow it."""

    def __init__(self, seconds: float, started: float):
        self.seconds = seconds
        self.elapsed_ms = (time.monotonic() - started) * 1e3
        super().__init__(
            f"timed out after {seconds:g} s (in-process, -j 0: the Function hangs, or the case needs more "
            "time: raise --timeout)"
        )


def can_interrupt() -> bool:
    """Whether this process can interrupt a running case: SIGALRM exists and this is the main thread."""
    return (
        hasattr(signal, "SIGALRM")
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in the code running under this block after `seconds`. A no-op where it
    cannot work (no SIGALRM, another thread) or where someone else owns SIGALRM (pytest-timeout).
    Native code that never returns to Python is only interrupted when it does: use workers (-j 1)
    for hard limits."""
    if not seconds or not can_interrupt() or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return
    started = time.monotonic()

    def on_alarm(signum: int, frame: object) -> None:
        raise CaseTimeout(seconds, started)

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

"""How far the case in this process has got, kept where a watcher reads it without asking: forward calls
into the Function made and returned, and when (a worker's parent: shared memory; in-process: the SIGALRM
handler), where the code stands when the time is up (read off the stack), and the record of a check
starting that the live line and a timeout message name."""

from __future__ import annotations

import ctypes
import functools
import math
import os
import signal
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

FORWARD_RETURNS, LAST_RETURN, LAST_EVENT, LAST_EVENT_AT, CHECK_STARTED, ANSWERED = range(6)
SLOTS = 6
"""Doubles per watched process: the count since the check started, and monotonic times
(CLOCK_MONOTONIC is system-wide, so a parent compares a worker's times with its own)."""

IDLE, IN_FORWARD, FORWARD_RETURNED = range(3)
"""LAST_EVENT's values."""

WHERE_BYTES = 512
"""Room for a worker's answer to "where are you?" (see `ask_where`)."""

Slots = Any
"""A ctypes array of SLOTS doubles (multiprocessing.RawArray("d", SLOTS) for a worker)."""


def new_slots() -> Slots:
    return (ctypes.c_double * SLOTS)()


_slots: Slots = new_slots()
_where: Any = None
"""A worker's shared buffer for its answer (multiprocessing.RawArray("c", WHERE_BYTES))."""


def use(slots: Slots, where: Any = None) -> None:
    """Make this process record its activity into `slots` (a worker: memory its parent reads), and
    answer `ask_where` into `where` (a worker's parent asks it before killing it)."""
    global _slots, _where
    _slots, _where = slots, where
    if where is not None and hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _answer_where)


def current() -> Slots:
    return _slots


def begin_check(now: float | None = None) -> None:
    """A check starts: its calls are counted from zero."""
    now = time.monotonic() if now is None else now
    slots = _slots
    slots[FORWARD_RETURNS] = 0.0
    slots[LAST_RETURN] = math.nan
    slots[LAST_EVENT] = IDLE
    slots[LAST_EVENT_AT] = slots[CHECK_STARTED] = now


def call(function: Callable[..., Any], values: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """`function(*values, **kwargs)`, its start and return recorded. About a microsecond: the battery
    makes thousands of these calls a second on toy cases."""
    slots = _slots
    slots[LAST_EVENT], slots[LAST_EVENT_AT] = IN_FORWARD, time.monotonic()
    try:
        return function(*values, **kwargs)
    finally:  # a forward that raises has returned too: the check goes on
        now = time.monotonic()
        slots[FORWARD_RETURNS] += 1
        slots[LAST_RETURN] = slots[LAST_EVENT_AT] = now
        slots[LAST_EVENT] = FORWARD_RETURNED


@dataclass(frozen=True)
class Activity:
    """A reading of the slots: what the Function did since the check started."""

    forward_returns: int
    last_return: float | None
    """Monotonic time of the last call that returned in this check (None: none has)."""
    last_event: int
    last_event_at: float
    check_started: float


def read(slots: Slots | None = None) -> Activity:
    """What `slots` (default: this process's) hold now. A parent reads a worker's without a lock: each
    double is written whole, and a count off by one call says nothing different."""
    values = list(slots if slots is not None else _slots)
    last = values[LAST_RETURN]
    return Activity(
        forward_returns=int(values[FORWARD_RETURNS]),
        last_return=None if math.isnan(last) else last,
        last_event=int(values[LAST_EVENT]),
        last_event_at=values[LAST_EVENT_AT],
        check_started=values[CHECK_STARTED],
    )


# ---------------------------------------------------------------------- where the code stands


@dataclass(frozen=True)
class Where:
    """Where a case's code stood when its time was up, read off its Python stack."""

    phase: str
    """"forward" or "backward" (in the Function's code, or in autograd's engine running its graph),
    "check" (the check's own code: lossctl's or torch's, no call into the Function under way), or
    "native" (a worker that did not answer: inside native code that never returns to Python)."""
    place: str = ""
    """file:line and function, e.g. "losses.py:42 in `backward`" (empty when unknown)."""

    def encode(self) -> bytes:
        return f"{self.phase}\n{self.place}".encode("utf-8", "replace")[: WHERE_BYTES - 1]

    @classmethod
    def decode(cls, data: bytes) -> Where | None:
        phase, _, place = data.decode("utf-8", "replace").partition("\n")
        return cls(phase, place) if phase else None


NATIVE = Where("native")

_ENGINE_ENTRIES = frozenset({"grad", "backward", "_engine_run_backward"})
"""torch functions that run autograd's engine: a Function's code inside them is its backward."""


def locate(frame: FrameType | None) -> Where | None:
    """Where the code of the case stands, from the innermost `frame` out to the runner that called the
    check: the innermost frame of the user's code (not lossctl's, torch's or the standard library's),
    in backward when autograd's engine called it, else forward; without one, in autograd's engine
    (a Module's backward, native) or in the check's own code."""
    frames = []
    while frame is not None and not _is_runner(frame):
        frames.append(frame)
        frame = frame.f_back
    if not frames:
        return None
    kinds = [_kind(f.f_code.co_filename) for f in frames]
    engine = next(
        (i for i, f in enumerate(frames) if kinds[i] == "torch" and f.f_code.co_name in _ENGINE_ENTRIES), None
    )
    user = next((i for i, kind in enumerate(kinds) if kind == "user"), None)
    if user is not None:
        phase = "backward" if engine is not None and engine > user else "forward"
        return Where(phase, _place(frames[user]))
    if engine is not None:
        return Where("backward", f"autograd's engine, called at {_place(frames[engine])}")
    return Where("check", _place(frames[0]))


def _place(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        shown = path
    return f"{path if shown.startswith('..') else shown}:{frame.f_lineno} in `{frame.f_code.co_name}`"


def _is_runner(frame: FrameType) -> bool:
    """lossctl's runner called the check: the frames from here out are the harness, not the case."""
    return frame.f_code.co_filename == _RUNNER_FILE


_LOSSCTL_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_RUNNER_FILE = os.path.join(_LOSSCTL_DIR, "runner.py")


@functools.cache
def _stdlib_dirs() -> tuple[str, ...]:
    return tuple({os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")})


def _kind(path: str) -> str:
    path = os.path.abspath(path) if not path.startswith("<") else path
    if path.startswith(_LOSSCTL_DIR):
        return "lossctl"
    torch = sys.modules.get("torch")
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep if torch and torch.__file__ else None
    if torch_dir and path.startswith(torch_dir):
        return "torch"
    if path.startswith("<") or (path.startswith(_stdlib_dirs()) and "site-packages" not in path):
        return "stdlib"
    return "user"


def _answer_where(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1 in a worker: write where the case stands for the parent, and go on (the parent kills it)."""
    if _where is not None:
        answer = (locate(frame) or Where("check")).encode()
        _where[: len(answer) + 1] = answer + b"\0"
        _slots[ANSWERED] = time.monotonic()


def ask_where(pid: int, slots: Slots, where: Any, wait_s: float = 0.5) -> Where | None:
    """Ask a worker where its case stands (SIGUSR1; it answers into shared memory) and wait up to
    `wait_s`: no answer means it is inside native code that does not return to Python (NATIVE).
    None where there is no SIGUSR1 (Windows)."""
    if not hasattr(signal, "SIGUSR1"):
        return None
    slots[ANSWERED] = 0.0
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if slots[ANSWERED]:
            return Where.decode(bytes(where[:]).split(b"\0", 1)[0])
        time.sleep(0.005)
    return NATIVE


@dataclass(frozen=True)
class CheckStarted:
    """A case has begun a check: what the live line shows and a timeout message names."""

    case: str
    check: str
    budget_s: float
    case_started: float
    """Monotonic time the case's budget began (after its inputs were built)."""
    at: float
    """Monotonic time this check began."""

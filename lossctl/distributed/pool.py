"""Long-lived rank processes, and talking to them with a deadline: a rank that raises, dies or
hangs becomes one RankFault naming the rank and what it was doing, and the pool is torn down.

Ranks start once (importing torch costs seconds) and form a new process group for each world size
(the first W processes), rendezvousing through a FileStore in a private temporary folder: no TCP
port is chosen or left bound by lossctl, and closing the pool removes the folder.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossctl.distributed.worker import STACK_SIGNAL, rank_main
from lossctl.parallel import SIGNAL_MEANINGS

STARTUP_TIMEOUT = 120.0
"""Seconds the ranks may take to start (import torch, warm up autograd) on a loaded machine."""
GROUP_TIMEOUT_MARGIN = 60.0
"""Seconds the process group's own timeout exceeds --timeout, so lossctl reports a hang first."""


DEATH_GRACE_S = 1.0
"""How long a rank's error waits for a peer's death, the likelier cause, to show."""


class RankFault(Exception):
    """A rank raised, died or did not answer in time; the message names it and what it did."""

    def __init__(self, message: str, traceback: str | None = None, *, setup: bool = False, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.traceback = traceback
        self.setup = setup
        """The spec could not be loaded or bound (a setup error, not a fault of the ranks)."""
        self.hint = hint


@dataclass
class _Rank:
    process: Any
    connection: Any
    stack_path: Path


class RankPool:
    """`size` rank processes; groups of any size up to it."""

    def __init__(self, size: int, timeout: float, *, backend: str = "gloo"):
        import torch

        self.size = size
        self.timeout = timeout
        """Seconds one case may take (--timeout): what a hang is reported against."""
        self.backend = backend
        self.folder = Path(tempfile.mkdtemp(prefix="lossctl-ranks-"))
        self.world_size = 0
        self.groups = 0
        context = _context()
        threads = max(1, torch.get_num_threads() // size)
        self.ranks: list[_Rank] = []
        try:
            for index in range(size):
                parent, child = context.Pipe()
                stack_path = self.folder / f"stack-{index}.txt"
                process = context.Process(
                    target=rank_main,
                    args=(index, child, os.getcwd(), str(stack_path), threads),
                    daemon=True,
                    name=f"lossctl-rank-{index}",
                )
                process.start()
                child.close()
                self.ranks.append(_Rank(process, parent, stack_path))
            self._wait_ready(max(STARTUP_TIMEOUT, timeout))
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, limit: float) -> None:
        """Wait for every rank to import torch and warm up, so no case's timeout pays for it."""
        deadline = time.monotonic() + limit
        waiting = set(range(self.size))
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RankFault(self._hang(sorted(waiting), [], "starting up", within=f"{limit:g} s"))
            ready = multiprocessing.connection.wait(
                [self.ranks[i].connection for i in waiting] + [self.ranks[i].process.sentinel for i in waiting],
                timeout=min(left, 1.0),
            )
            for i in sorted(waiting):
                if self.ranks[i].connection in ready:
                    try:
                        self.ranks[i].connection.recv()
                    except (EOFError, OSError):
                        raise RankFault(self._death(i, "starting up")) from None
                    waiting.discard(i)
                elif self.ranks[i].process.sentinel in ready:
                    raise RankFault(self._death(i, "starting up"))

    @property
    def pids(self) -> list[int]:
        return [rank.process.pid for rank in self.ranks]

    def form_group(self, world_size: int, deadline: float) -> None:
        """Make the first `world_size` processes a process group (leaving the previous one)."""
        self.groups += 1
        store = self.folder / f"store-{self.groups}"
        payload = (world_size, str(store), self.backend, self.timeout + GROUP_TIMEOUT_MARGIN)
        self.world_size = world_size
        self.ask("join", [payload] * world_size, "joining the process group", deadline)

    def ask(self, op: str, payloads: Sequence[Any], doing: str, deadline: float) -> list[Any]:
        """Send one request per rank of the current group (payloads in rank order) and return
        their replies, or raise RankFault."""
        ranks = self.ranks[: len(payloads)]
        for rank, payload in zip(ranks, payloads, strict=True):
            try:
                rank.connection.send((op, payload))
            except (OSError, ValueError):
                raise RankFault(self._death(ranks.index(rank), doing)) from None
        replies: dict[int, Any] = {}
        while len(replies) < len(ranks):
            waiting = [i for i in range(len(ranks)) if i not in replies]
            left = deadline - time.monotonic()
            if left <= 0:
                raise RankFault(self._hang(waiting, sorted(replies), doing))
            waitables = [ranks[i].connection for i in waiting] + [ranks[i].process.sentinel for i in waiting]
            ready = multiprocessing.connection.wait(waitables, timeout=min(left, 1.0))
            for i in waiting:
                rank = ranks[i]
                if rank.connection in ready:
                    try:
                        reply = rank.connection.recv()
                    except (EOFError, OSError):
                        raise RankFault(self._death(i, doing)) from None
                    if reply[0] == "setup":
                        raise RankFault(reply[1], reply[3], setup=True, hint=reply[2])
                    if reply[0] == "raised":
                        self._blame_a_death_first(ranks, i, doing)
                        raise RankFault(
                            f"rank {i} raised {reply[1]} while {doing}" + self._others_note(i, len(ranks)),
                            reply[2],
                        )
                    replies[i] = reply[1]
                elif rank.process.sentinel in ready:
                    raise RankFault(self._death(i, doing))
        return [replies[i] for i in range(len(ranks))]

    def close(self) -> None:
        """Kill every rank (a rank blocked in a collective would not exit on request) and
        remove the rendezvous folder."""
        for rank in self.ranks:
            with contextlib.suppress(OSError, ValueError):
                rank.connection.close()
            if rank.process.is_alive():
                rank.process.kill()
        for rank in self.ranks:
            rank.process.join(5)
        self.ranks = []
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blame_a_death_first(self, ranks: Sequence[Any], raiser: int, doing: str) -> None:
        """A rank that dies takes its connections with it, so its peers raise ("Connection closed
        by peer") at about the moment it exits. The death is the cause: wait a moment for one
        before blaming the rank that raised."""
        others = [j for j in range(len(ranks)) if j != raiser]
        if not others:
            return
        dead = multiprocessing.connection.wait([ranks[j].process.sentinel for j in others], timeout=DEATH_GRACE_S)
        for j in others:
            if ranks[j].process.sentinel in dead:
                raise RankFault(self._death(j, doing))

    # ------------------------------------------------------------------ fault messages

    def _others_note(self, culprit: int, world: int) -> str:
        others = [i for i in range(world) if i != culprit]
        if not others:
            return ""
        return f" (rank {others[0]} was stopped)" if len(others) == 1 else f" (ranks {_list(others)} were stopped)"

    def _death(self, index: int, doing: str) -> str:
        process = self.ranks[index].process
        process.join(1)
        code = process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"{name}, {SIGNAL_MEANINGS.get(-code, 'killed by a signal')}"
        else:
            how = f"exit code {code}: the Function called sys.exit or os._exit?"
        world = self.world_size or len(self.ranks)
        return f"rank {index} died ({how}) while {doing}" + self._others_note(index, world)

    def _hang(self, waiting: list[int], finished: list[int], doing: str, within: str | None = None) -> str:
        """Say which rank hangs where: ask each silent rank for its stack; a rank outside
        torch.distributed is the culprit, the ones inside a collective are waiting for it."""
        stacks = self._stacks(waiting)
        where = {i: describe_stack(stacks.get(i, "")) for i in waiting}
        stuck = [i for i in waiting if where[i][0] != "collective"]
        in_collective = [i for i in waiting if where[i][0] == "collective"]
        parts = []
        for i in stuck:
            place = f" at {where[i][1]}" if where[i][1] else ""
            parts.append(f"rank {i} hangs{place}")
        if in_collective:
            calls = sorted({where[i][1] for i in in_collective})
            verb = "waits" if len(in_collective) == 1 else "wait"
            parts.append(f"rank{'s' * (len(in_collective) > 1)} {_list(in_collective)} {verb} in {', '.join(calls)}")
        if finished and in_collective and not stuck:
            parts.append(
                f"rank{'s' * (len(finished) > 1)} {_list(finished)} had finished: "
                f"{'they' if len(finished) > 1 else 'it'} skipped a collective the others called"
            )
        within = within or f"{self.timeout:g} s (--timeout)"
        return f"no answer within {within} while {doing}: " + "; ".join(parts)

    def _stacks(self, indices: list[int]) -> dict[int, str]:
        for i in indices:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(self.ranks[i].process.pid, STACK_SIGNAL)
        time.sleep(0.3)
        out = {}
        for i in indices:
            with contextlib.suppress(OSError):
                out[i] = self.ranks[i].stack_path.read_text(errors="replace")
        return out


_DECORATOR_FRAMES = ("wrapper", "inner", "_fn", "decorated")
"""Frames of torch.distributed's logging decorators, which wrap every collective."""
_FRAME = re.compile(r'File "(?P<file>.+)", line (?P<line>\d+) in (?P<func>\S+)')


def describe_stack(dump: str) -> tuple[str, str]:
    """("collective", "all_gather (called at file.py:12 in forward)") when the innermost frames
    are torch.distributed's, else ("user", "file.py:12 in forward") for the innermost frame outside
    torch and lossctl, else ("unknown", "")."""
    frames = [m.groupdict() for m in _FRAME.finditer(dump)]  # innermost first
    frames = frames[: next((i for i, f in enumerate(frames) if "lossctl/distributed/worker.py" in f["file"]), None)]

    def is_torch(frame: dict[str, str]) -> bool:
        return "/torch/" in frame["file"]

    if frames and "/torch/distributed/" in frames[0]["file"]:
        outer = 0
        while outer + 1 < len(frames) and is_torch(frames[outer + 1]):
            outer += 1
        distributed = [f for f in frames[: outer + 1] if "/torch/distributed/" in f["file"]]
        named = [f for f in distributed if f["func"] not in _DECORATOR_FRAMES] or distributed
        call = named[-1]["func"]
        caller = frames[outer + 1] if outer + 1 < len(frames) else None
        return "collective", call + (f" (called at {_where(caller)})" if caller else "")
    for frame in frames:
        if not is_torch(frame) and "/lossctl/" not in frame["file"].replace("/lossctl/examples/", "/x/"):
            return "user", _where(frame)
    return "unknown", ""


def _where(frame: dict[str, str]) -> str:
    return f"{Path(frame['file']).name}:{frame['line']} in {frame['func']}"


def _list(indices: Sequence[int]) -> str:
    return ", ".join(str(i) for i in indices)


def _context() -> multiprocessing.context.BaseContext:
    """A fork server that preloaded torch: each rank then starts in milliseconds, and no rank
    inherits the coordinator's threads (forking a process that ran torch ops can deadlock)."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # symbolic_shapes: what autograd's first call imports (sympy), a second per rank otherwise
        preload = ["torch", "torch.fx.experimental.symbolic_shapes", "lossctl.runner", "lossctl.distributed.worker"]
        context.set_forkserver_preload(preload)
        return context
    return multiprocessing.get_context("spawn")

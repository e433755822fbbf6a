"""Run cases in worker processes, so a Function that crashes, hangs or runs out of memory costs one
ERROR row instead of the whole run.

Workers are long-lived: each imports torch once (they fork from a server that preloaded lossctl and
torch) and then runs case after case. A worker that dies or passes its case's timeout is killed and
replaced; its case becomes an ERROR row that says what happened.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lossctl import activity
from lossctl.activity import CheckStarted
from lossctl.report import CaseResult, CheckResult
from lossctl.watchdog import CaseWatch

OnCase = Callable[[CaseResult], None]
OnStart = Callable[[CheckStarted], None]
RunTask = Callable[..., list[CaseResult]]
"""Runs one task in this process: (task, options, on_result, on_start) -> its case results
(runner.run_task); the two callbacks report each check's start and result, for the timeout message
and the live line."""
OnCrash = Callable[..., CaseResult]
"""The case for a task whose worker died or hung: (task, options, message, ms[, finished rows, the
check cut short]) -> its ERROR row after the rows that finished (runner.crash_result)."""
Prepare = Callable[[Any], None]
"""Run once in each new worker with the options, before its first task (runner.warm_up_for)."""

SIGNAL_MEANINGS = {
    signal.SIGSEGV: "a segmentation fault in native code",
    signal.SIGABRT: "an abort (os.abort(), or a failed assertion in C/C++ code)",
    signal.SIGKILL: "killed — most likely out of memory (the OOM killer)",
    signal.SIGBUS: "a bus error in native code",
    signal.SIGFPE: "a floating-point exception in native code",
    signal.SIGILL: "an illegal instruction in native code",
}


@dataclass(frozen=True)
class ParallelOutcome:
    results: list[CaseResult]
    interrupted: bool


FORK_IS_SAFE = False
"""Set by the console entry point, whose process has run no torch op before it starts workers.
Forking a process that has (its OpenMP or intra-op thread pool running, as in pytest or a notebook
that called lossctl.check) can leave a worker deadlocked, so only a fresh process forks."""


def _context() -> multiprocessing.context.BaseContext:
    """fork from a fresh lossctl process (Linux, CUDA not initialized): workers start in
    milliseconds with torch already imported. Else a fork server that preloads torch once, else
    spawn."""
    import torch

    methods = multiprocessing.get_all_start_methods()
    fresh = FORK_IS_SAFE and sys.platform.startswith("linux") and not torch.cuda.is_initialized()
    if "fork" in methods and fresh:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "lossctl.runner"])
        return context
    return multiprocessing.get_context("spawn")


def _worker_main(
    connection: Any,
    run_task: RunTask,
    on_crash: OnCrash,
    prepare: Prepare | None,
    options: Any,
    cwd: str,
    threads: int,
    parent_pid: int,
    slots: activity.Slots,
    where: Any,
) -> None:
    """A worker's loop: receive (index, task), run it, send (index, results). The Function's calls are
    recorded in `slots`, memory the parent reads when the case runs out of time, after asking (SIGUSR1)
    for where the case stands, which the worker writes into `where`."""
    import warnings

    from lossctl.watchdog import die_with_parent

    die_with_parent(parent_pid)
    activity.use(slots, where)
    from lossctl.memory import claim_process

    claim_process()  # a worker is lossctl's own process

    import torch

    from lossctl.loader import describe_exception

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    os.chdir(cwd)
    # What the user's code prints goes to stderr: stdout carries lossctl's report (maybe JSON).
    sys.stdout.flush()
    os.dup2(2, 1)
    torch.set_num_threads(threads)  # workers share the cores instead of oversubscribing them
    if prepare is not None:
        prepare(options)
    while True:
        try:
            message = connection.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        index, task = message
        interrupted = False

        def on_start(step: CheckStarted) -> None:
            connection.send((PROGRESS, "start", step))

        def on_result(case_id: str, result: CheckResult) -> None:
            connection.send((PROGRESS, "done", result))  # kept by the parent if the case times out

        try:
            results = run_task(task, options, on_result, on_start)
        except KeyboardInterrupt as error:  # the user's code raised it: an interrupt, as in-process
            results = [on_crash(task, options, f"interrupted: {describe_exception(error)}", 0.0)]
            interrupted = True
        except BaseException as error:  # lossctl itself failed on this case: report, keep going
            message = f"lossctl failed on this case: {type(error).__name__}: {error}"
            results = [on_crash(task, options, message, 0.0)]
        connection.send((index, results, interrupted))


PROGRESS = "progress"
"""Tags a worker's message about a check starting or finishing (results come as (index, …))."""


@dataclass
class _Worker:
    process: Any
    connection: Any
    slots: activity.Slots
    """Shared memory where the worker records its Function's calls (lossctl.activity)."""
    where: Any
    """Shared memory where the worker answers activity.ask_where."""
    task: tuple[int, Any] | None = None
    watch: CaseWatch | None = None
    """Its case's check and finished rows (from the worker's PROGRESS messages) and activity."""

    @property
    def started(self) -> float:
        return self.watch.started if self.watch is not None else 0.0

    def assign(self, task: tuple[int, Any]) -> None:
        self.task, self.watch = task, CaseWatch(time.monotonic(), self.slots)

    def progress(self, event: str, detail: Any) -> None:
        assert self.watch is not None
        if event == "start":
            self.watch.start(detail)
        else:
            self.watch.done(detail)


def run_isolated(
    tasks: Sequence[Any],
    run_task: RunTask,
    options: Any,
    workers: int,
    timeout: float,
    on_case: OnCase | None = None,
    *,
    on_crash: OnCrash,
    prepare: Prepare | None = None,
    on_start: OnStart | None = None,
) -> ParallelOutcome:
    """Run `tasks` with `run_task(task, options)` on `workers` processes; results come back in
    task order, each case's through `on_case` as it finishes; `on_start` hears of each check as a
    worker starts it. The executor knows nothing of what a task is: the runner passes its functions in."""
    import torch

    context = _context()
    threads = max(1, torch.get_num_threads() // max(1, min(workers, len(tasks))))
    pool: list[_Worker] = []
    queue = deque(enumerate(tasks))
    done: dict[int, list[CaseResult]] = {}

    def start() -> _Worker:
        parent, child = context.Pipe()
        slots, where = context.RawArray("d", activity.SLOTS), context.RawArray("c", activity.WHERE_BYTES)
        process = context.Process(
            target=_worker_main,
            args=(child, run_task, on_crash, prepare, options, os.getcwd(), threads, os.getpid(), slots, where),
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent, slots, where)

    def finish(index: int, results: list[CaseResult]) -> None:
        done[index] = results
        if on_case:
            for result in results:
                on_case(result)

    def retire(worker: _Worker, message: str, cut_short: bool = False) -> None:
        """Kill a worker, record its case as an ERROR, and put a fresh worker in its place. A case
        `cut_short` by its timeout keeps the rows of its finished checks; its row is the check's."""
        now = time.monotonic()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.connection.close()
        if worker.task is not None and worker.watch is not None:
            index, task = worker.task
            watch = worker.watch
            if cut_short and watch.check is not None:
                ms = watch.unaccounted_ms(now)
                finish(index, [on_crash(task, options, message, ms, watch.finished, watch.check)])
            else:
                finish(index, [on_crash(task, options, message, (now - watch.started) * 1e3)])
        pool.remove(worker)
        if queue:
            pool.append(start())

    interrupted = False
    try:
        for _ in range(min(workers, len(tasks))):
            pool.append(start())
        while queue or any(w.task is not None for w in pool):
            for worker in pool:
                if worker.task is None and queue:
                    worker.assign(queue.popleft())
                    worker.connection.send(worker.task)
            busy = [w for w in pool if w.task is not None]
            if not busy:
                break
            now = time.monotonic()
            wait_for = max(0.0, min(w.started + timeout - now for w in busy))
            waitables = [w.connection for w in busy] + [w.process.sentinel for w in busy]
            ready = multiprocessing.connection.wait(waitables, timeout=min(wait_for, 1.0))
            for worker in list(busy):
                if worker.connection in ready:
                    try:
                        message = worker.connection.recv()
                    except (EOFError, OSError):
                        retire(worker, _death_message(worker))
                        continue
                    if message[0] == PROGRESS:
                        worker.progress(*message[1:])
                        if on_start and message[1] == "start":
                            on_start(message[2])
                        continue
                    index, results, user_interrupt = message
                    worker.task = None
                    finish(index, results)
                    if user_interrupt:
                        raise KeyboardInterrupt
                elif worker.process.sentinel in ready or not worker.process.is_alive():
                    retire(worker, _death_message(worker))
                elif (now := time.monotonic()) - worker.started > timeout:
                    assert worker.watch is not None
                    where = activity.ask_where(worker.process.pid, worker.slots, worker.where)
                    retire(worker, worker.watch.timeout_message(timeout, now, where), cut_short=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for worker in pool:
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send(None)
        deadline = time.monotonic() + 2
        for worker in pool:
            worker.process.join(max(0.0, deadline - time.monotonic()) if not interrupted else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
    results = [result for index in sorted(done) for result in done[index]]
    return ParallelOutcome(results=results, interrupted=interrupted)


def _death_message(worker: _Worker) -> str:
    worker.process.join(1)
    code = worker.process.exitcode
    if code is not None and code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        meaning = SIGNAL_MEANINGS.get(number, "killed by a signal")
        return f"the worker process died: {name} (signal {number}), {meaning}"
    return f"the worker process exited with code {code} (the Function called sys.exit or os._exit?)"

"""Validation of command-line flags that Typer's types cannot express (ranges, conflicts, empties)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lossctl.errors import UsageError
from lossctl.limits import INT64_RANGE


def validate_targets(targets: Sequence[str]) -> None:
    """An empty TARGET would mean "the current folder" to the path logic: scan everything."""
    for target in targets:
        if not target.strip():
            raise UsageError(
                "an empty TARGET was given", hint="name a Function, a spec file or a folder (e.g. configs/)"
            )


def validate_timeout(timeout: float | None, source: str = "--timeout") -> None:
    if timeout is None:
        return
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"{source} must be a positive number of seconds, got {timeout}", hint="e.g. --timeout 60")


def validate_budget(budget: float | None, source: str = "--budget") -> None:
    if budget is None:
        return
    if not math.isfinite(budget) or budget <= 0:
        raise UsageError(f"{source} must be a positive number of seconds, got {budget}", hint="e.g. --budget 120")


def validate_seed(seed: int | None) -> None:
    """The same rule as a spec's `seed:`."""
    if seed is not None and not 0 <= seed <= INT64_RANGE[1]:
        raise UsageError(f"--seed must be an integer from 0 to {INT64_RANGE[1]:,}, got {seed}")


def validate_selection(checks: Sequence[str], skip: Sequence[str]) -> None:
    """`--checks a --skip a` leaves nothing to run: say so instead of an empty table."""
    if checks and set(checks) <= set(skip):
        both = ", ".join(c for c in checks if c in skip)
        raise UsageError(
            f"--checks and --skip both name {both}: no check is left to run", hint="drop it from one of them"
        )


def validate_in_process_timeout(jobs: int, timeout_given: bool) -> None:
    """`-j 0` enforces --timeout with SIGALRM; where that cannot work, refuse instead of ignoring it."""
    from lossctl.watchdog import can_interrupt

    if jobs == 0 and timeout_given and not can_interrupt():
        raise UsageError(
            "--timeout cannot be enforced with -j 0 here (no SIGALRM, or not the main thread)",
            hint="use -j 1 (a worker process is killed at the timeout), or drop --timeout",
        )


def validate_device(device: str | None, source: str = "--device") -> None:
    """An empty --device would fall back to the config's or auto: say it is empty instead."""
    if device is not None and not device.strip():
        raise UsageError(f"{source}: empty device name", hint="use cpu, cuda, cuda:N, mps or auto")

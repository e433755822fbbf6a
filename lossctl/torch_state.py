"""torch's process-wide state, snapshotted before a case or check and restored after it, so one
Function cannot change the next case's verdict; what it changed is reported."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Setting:
    """One piece of global state: how to read it and how to put it back."""

    name: str
    get: Callable[[], Any]
    set: Callable[[Any], None]
    reported: bool = True
    """False for state a correct Function changes too (drawing random numbers advances the RNG)."""


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


def _set_anomaly(value: tuple[bool, bool]) -> None:
    torch.autograd.set_detect_anomaly(value[0], check_nan=value[1])


def _autocast(device: str) -> Setting:
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4: one API for every device type

        def get() -> tuple[bool, torch.dtype]:
            return torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)

        def put(value: tuple[bool, torch.dtype]) -> None:
            torch.set_autocast_enabled(device, value[0])
            torch.set_autocast_dtype(device, value[1])

    elif device == "cpu":  # torch 2.2-2.3

        def get() -> tuple[bool, torch.dtype]:
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()

        def put(value: tuple[bool, torch.dtype]) -> None:
            torch.set_autocast_cpu_enabled(value[0])
            torch.set_autocast_cpu_dtype(value[1])

    else:

        def get() -> tuple[bool, torch.dtype]:
            return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()

        def put(value: tuple[bool, torch.dtype]) -> None:
            torch.set_autocast_enabled(value[0])
            torch.set_autocast_gpu_dtype(value[1])

    return Setting(f"autocast ({device})", get, put)


def _cudnn(flag: str) -> Setting:
    return Setting(
        f"torch.backends.cudnn.{flag}",
        lambda: getattr(torch.backends.cudnn, flag),
        lambda value: setattr(torch.backends.cudnn, flag, value),
    )


def _cuda_rng() -> Setting:
    def get() -> Any:
        return torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def put(value: Any) -> None:
        if value is not None:
            torch.cuda.set_rng_state_all(value)

    return Setting("CUDA RNG state", get, put, reported=False)


_DEFAULT_DEVICE = (
    # torch.get_default_device exists from torch 2.3; before it a Function cannot read it back either.
    (Setting("default device", torch.get_default_device, torch.set_default_device),)
    if hasattr(torch, "get_default_device")
    else ()
)

SETTINGS: tuple[Setting, ...] = (
    Setting("default dtype", torch.get_default_dtype, torch.set_default_dtype),
    *_DEFAULT_DEVICE,
    Setting("grad mode", torch.is_grad_enabled, torch.set_grad_enabled),
    Setting(
        "deterministic algorithms",
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        _set_deterministic,
    ),
    Setting(
        "anomaly detection",
        lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        _set_anomaly,
    ),
    Setting("number of threads", torch.get_num_threads, torch.set_num_threads),
    Setting("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    _autocast("cpu"),
    _autocast("cuda"),
    _cudnn("enabled"),
    _cudnn("benchmark"),
    _cudnn("deterministic"),
    Setting("CPU RNG state", torch.get_rng_state, torch.set_rng_state, reported=False),
    _cuda_rng(),
)


def snapshot() -> list[Any]:
    return [setting.get() for setting in SETTINGS]


def restore(before: list[Any]) -> list[str]:
    """Put every setting back; describe the reported ones that had changed."""
    changed = []
    for setting, old in zip(SETTINGS, before, strict=True):
        new = setting.get()
        if _same(old, new):
            continue
        setting.set(old)
        if setting.reported:
            changed.append(f"{setting.name} ({_show(old)} → {_show(new)})")
    return changed


Change = tuple[str, str | None]
"""What changed (`default dtype (float32 → float64)`) and in which check (None: not known)."""

_journals: list[list[Change]] = []
"""Open isolated_state blocks, outermost first: an inner block's changes are also the outer's."""


@contextlib.contextmanager
def isolated_state(label: str | None = None) -> Iterator[list[Change]]:
    """Restore torch's global state when the block ends. The yielded list is filled, on exit, with
    what changed inside it (nested blocks included), each tagged with `label` when given."""
    before = snapshot()
    changes: list[Change] = []
    _journals.append(changes)
    try:
        yield changes
    finally:
        _journals.pop()
        changes.extend((what, label) for what in restore(before))
        if _journals:
            _journals[-1].extend(changes)


def state_note(changes: list[Change]) -> str | None:
    """The note shown under a case whose Function changed global state (None: it did not)."""
    if not changes:
        return None
    where: dict[str, list[str]] = {}
    for what, label in changes:
        labels = where.setdefault(what, [])
        if label and label not in labels:
            labels.append(label)
    parts = [f"{what}{_places(labels)}" for what, labels in where.items()]
    return (
        "the Function changed torch's global state: "
        + "; ".join(parts)
        + ". lossctl restored it after each check; a Function must not change global state"
    )


def _places(labels: list[str]) -> str:
    if not labels:
        return ""
    more = f" and {len(labels) - 2} more" if len(labels) > 2 else ""
    return f" in {', '.join(labels[:2])}{more}"


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, torch.Tensor):
        return isinstance(new, torch.Tensor) and torch.equal(old, new)
    if isinstance(old, list) and old and isinstance(old[0], torch.Tensor):
        return isinstance(new, list) and len(old) == len(new) and all(map(torch.equal, old, new))
    return old == new


def _show(value: Any) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, tuple):
        return "/".join(_show(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)

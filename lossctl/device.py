"""Resolve `--device` to an available torch device, and time work on it honestly."""

from __future__ import annotations

import re
import time

import torch

from lossctl.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda when available, else cpu; an unavailable device is a DeviceError."""
    name = name.strip().lower()
    if not name:
        raise DeviceError("--device: empty device name", hint="use cpu, cuda, cuda:N, mps or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device: unknown device `{name}`", hint="use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cpu":
        if device.index not in (None, 0):  # torch accepts cpu:N and ignores N: one CPU device
            raise DeviceError(f"--device {name}: there is one CPU device", hint="use --device cpu")
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: CUDA is not available here "
                f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)",
                hint="use --device cpu, or run on a machine with a CUDA GPU",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--device {name}: there {'is' if count == 1 else 'are'} only {count} CUDA "
                f"device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})",
            )
        return torch.device("cuda", device.index or 0)
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"--device {name}: MPS is not available here", hint="use --device cpu")
        return device
    raise DeviceError(f"--device: `{name}` is not supported", hint="use cpu, cuda, cuda:N, mps or auto")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    import platform

    return platform.processor() or platform.machine() or "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def clock(device: torch.device) -> float:
    """A perf_counter reading taken after the device's queued work has finished, so the
    difference of two readings is the wall time of the work between them."""
    synchronize(device)
    return time.perf_counter()


def seed_device(device: torch.device, seed: int) -> None:
    """Seed the CPU generator and this device's, like torch.manual_seed but without queueing a
    lazy seed for every CUDA device (which costs a stack capture per call on CPU-only builds)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


_MISMATCH = (
    re.compile(
        r"Expected all tensors to be on the same device, but (?:found at least two devices, (\S+) and (\S+)!"
        r"|got .* is on (\S+), different from other tensors on (\S+))"
    ),
    re.compile(r"Tensor on device (\S+) is not on the expected device (\S+?)!"),
)


def mismatch_hint(message: str) -> str | None:
    """For torch's "tensors on different devices" errors (both wordings torch has used, and the
    meta device's): the likely cause in the user's terms, else None."""
    for pattern in _MISMATCH:
        match = pattern.search(message)
        if match:
            devices = sorted({d.rstrip("!,.") for d in match.groups() if d})
            where = " and ".join(devices)
            if "cpu" not in devices:
                return f"tensors on {where} meet in one op: a device hard-coded inside the Function (cuda:0)?"
            return (
                f"tensors on {where} meet in one op: a tensor created inside the Function without device= "
                "(torch.eye(n), torch.zeros(...), torch.tensor(...)) is on the CPU — create it on the "
                "inputs' device, e.g. torch.eye(n, device=x.device, dtype=x.dtype)"
            )
    return None

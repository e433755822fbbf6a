"""Functions a hostile or careless contributor writes: ones that change torch's global state, ones
whose verdict depends on it, and ones that interrupt or never return."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.autograd import Function


class _Square(Function):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


# --------------------------------------------------------------------------- change global state


class SetsDefaultFloat64(_Square):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        torch.set_default_dtype(torch.float64)
        ctx.save_for_backward(x)
        return x * x


class SetsDeterministic(_Square):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        torch.use_deterministic_algorithms(True)
        ctx.save_for_backward(x)
        return x * x


class SetsAnomaly(_Square):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        torch.autograd.set_detect_anomaly(True)
        ctx.save_for_backward(x)
        return x * x


class ChangesThreads(_Square):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        torch.set_num_threads(3)
        ctx.save_for_backward(x)
        return x * x


class GradOffModule(nn.Module):
    """Turns grad mode off from its constructor (a callable the runner builds outside any check)."""

    def __init__(self) -> None:
        super().__init__()
        torch.set_grad_enabled(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


# --------------------------------------------------------------------------- sensitive to global state


class ZerosBuffer(Function):
    """A bug: the result buffer takes the default dtype (float32), so float64 inputs lose precision
    and gradcheck fails. A leaked float64 default would hide the bug."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        out = torch.zeros(x.shape)
        out += x * x
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class Unpools(Function):
    """Correct, but max_unpool has no deterministic CPU kernel: a leaked
    use_deterministic_algorithms(True) makes it raise."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        flat = x.reshape(1, 1, -1)
        index = torch.arange(0, 2 * flat.shape[-1], 2).reshape(1, 1, -1)
        spread = torch.nn.functional.max_unpool1d(flat, index, 2)  # x at even places, zeros between
        return (spread * spread).reshape(-1)[::2].reshape(x.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class NaNBackward(Function):
    """A bug (backward returns NaN): a check reports it as a finding; a leaked anomaly mode turns
    it into autograd's RuntimeError instead."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad / (x - x)


# --------------------------------------------------------------------------- interrupt or never return


class SpinsForever(Function):
    """Busy Python loop (SIGALRM interrupts it in-process)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x + 0
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class SwallowsEverything(Function):
    """Sleeps in a loop that catches Exception: the timeout must still end it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        while True:
            try:
                time.sleep(0.05)
            except Exception:  # the point of the test: it must not catch the timeout
                continue
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class RaisesKeyboardInterrupt(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class RaisesGeneratorExit(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        raise GeneratorExit("forward closed a generator")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class MarksThenHangs(Function):
    """Writes its pid to $LOSSCTL_TEST_MARK, then sleeps: lets a test signal lossctl mid-case."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        import os

        with open(os.environ["LOSSCTL_TEST_MARK"], "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(3600)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad

"""Functions that run out of time in different ways: for the timeout and progress tests."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.autograd import Function


class HangsInBackward(Function):
    """Forward is fine; backward never returns (a sleep loop, as a deadlocked kernel launch would be)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        while True:
            time.sleep(0.02)


class SlowButSteady(Function):
    """Right, but every forward takes 4 ms: gradcheck's hundreds of forwards outlast a short limit."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.004)
        ctx.save_for_backward(x)
        return (x * x).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad

"""A loss whose forward is slow for its size (as a kernel launch, a remote call or a Python loop can
be), correct and broken: the cases where a check's method must fit the budget, not the tensor size."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

FORWARD_SECONDS = 0.2
"""What every forward costs, whatever the size: a budget of 60 s fits about 300 forwards."""


class SlowMeanSquaredError(Function):
    """mean((input − target)²), with a forward that takes FORWARD_SECONDS."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(FORWARD_SECONDS)
        diff = input - target
        ctx.save_for_backward(diff)
        return diff.square().mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (diff,) = ctx.saved_tensors
        grad = diff * (2.0 / diff.numel()) * grad_output
        return (grad if ctx.needs_input_grad[0] else None, -grad if ctx.needs_input_grad[1] else None)


class SlowMSEMissingMean(SlowMeanSquaredError):
    """Backward forgets the 1/numel of the mean."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (diff,) = ctx.saved_tensors
        grad = 2.0 * diff * grad_output
        return (grad if ctx.needs_input_grad[0] else None, -grad if ctx.needs_input_grad[1] else None)

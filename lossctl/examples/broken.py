"""Deliberately wrong Functions: each has one realistic backward bug for lossctl to catch.

lossctl check lossctl.examples.broken.ClippedGradMSELoss   # fails `linearity`
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function


class _MSE(Function):
    """mean((input − target)²), with the correct forward; subclasses break the backward."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()


class ClippedGradMSELoss(_MSE):
    """Clips the upstream gradient: gradcheck (grad_output 0 and ±1) passes, scaled losses break."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = grad_output.clamp(-1, 1) * 2 * diff / diff.numel()
        return grad, -grad


class MissingMeanMSELoss(_MSE):
    """Forgets the 1/numel of the mean: the gradient is N·C times too large."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = grad_output * 2 * diff
        return grad, -grad


class SignFlippedMSELoss(_MSE):
    """Returns the negative gradient (a gradient ascent in disguise)."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = grad_output * 2 * diff / diff.numel()
        return -grad, grad


class NoneGradMSELoss(_MSE):
    """Returns None for `input`, which autograd turns into a silently missing gradient."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[None, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        return None, -grad_output * 2 * diff / diff.numel()


class ExtraGradMSELoss(_MSE):
    """Returns three gradients for two inputs."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (diff,) = ctx.saved_tensors
        grad = grad_output * 2 * diff / diff.numel()
        return grad, -grad, grad


class RowSumGradMSELoss(_MSE):
    """Returns a gradient summed over the last dim: the wrong shape for `input`."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = grad_output * 2 * diff / diff.numel()
        return grad.sum(-1), -grad


class RaisingLoss(_MSE):
    """A backward with a typo that raises: lossctl reports the user's own exception."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = grad_output * 2 * diff / diff.numel()
        return grad, -grad.tranpose(0, 1)  # type: ignore[attr-defined]

"""Deliberately wrong Functions: each has one realistic backward bug for lossctl to catch.

lossctl check lossctl.examples.broken.ClippedGradMSELoss   # fails `linearity`
lossctl check tests/specs/linear_ce_broken.yaml            # two broken linear+cross-entropy copies
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from lossctl.examples.linear_ce import LinearCrossEntropy, LinearCrossEntropyIgnoring, with_ignored_rows


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


class LinearCrossEntropyTailDropped(LinearCrossEntropyIgnoring):
    """Backward walks whole chunks only: when N is not a multiple of chunk_size the last rows
    get no gradient for `hidden` and add nothing to `weight`'s (forward is right)."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, safe_target, valid, lse = ctx.saved_tensors
        scale = grad_output.to(lse.dtype) / valid.sum()
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros_like(weight)
        whole = hidden.shape[0] - hidden.shape[0] % ctx.chunk_size
        for start in range(0, whole, ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            h = hidden[rows]
            grad_logits = ((h @ weight.T).to(lse.dtype) - lse[rows].unsqueeze(-1)).exp()
            grad_logits.scatter_add_(-1, safe_target[rows].unsqueeze(-1), -torch.ones_like(lse[rows]).unsqueeze(-1))
            grad_logits = (grad_logits * (valid[rows] * scale).unsqueeze(-1)).to(hidden.dtype)
            grad_hidden[rows] = grad_logits @ weight
            grad_weight += grad_logits.T @ h
        return grad_hidden, grad_weight, None, None, None, None


class LinearCrossEntropyMeanOverAllRows(LinearCrossEntropyIgnoring):
    """Averages over all N rows, ignored ones included (sum / N instead of sum / rows kept):
    consistent with its own backward, so gradcheck passes; only a reference catches it."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        ignore_every: int = 4,
        ignore_index: int = -100,
        chunk_size: int = 1024,
    ) -> torch.Tensor:
        loss = LinearCrossEntropyIgnoring.forward(ctx, hidden, weight, target, ignore_every, ignore_index, chunk_size)
        kept = (with_ignored_rows(target, ignore_every, ignore_index) != ignore_index).sum()
        ctx.rescale = kept / hidden.shape[0]
        return loss * ctx.rescale

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = LinearCrossEntropy.backward.__wrapped__(ctx, grad_output * ctx.rescale)
        return (*grads, None)

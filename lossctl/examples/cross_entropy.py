"""Cross-entropy with integer class targets and a hand-written backward."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class CrossEntropyLoss(Function):
    """mean_i −log softmax(logits_i)[target_i]; d/d logits = (softmax − onehot) / N."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(dim=-1)
        ctx.save_for_backward(log_probs, target)
        return -log_probs.gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    @once_differentiable  # backward uses forward's intermediates, so it is not differentiable itself
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, target = ctx.saved_tensors
        grad = log_probs.exp()
        grad.scatter_add_(-1, target.unsqueeze(-1), -torch.ones_like(grad[..., :1]))
        n = target.numel()
        return grad * (grad_output / n), None

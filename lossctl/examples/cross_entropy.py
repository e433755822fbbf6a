"""Cross-entropy with integer class targets and a hand-written backward."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class CrossEntropyLoss(Function):
    """mean over targets ≠ ignore_index of −log softmax(logits_i)[target_i];
    d/d logits = (softmax − onehot) / count on those rows, 0 on ignored rows."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        valid = target != ignore_index
        safe = target.where(valid, torch.zeros_like(target))  # gather needs an index in range
        log_probs = logits.log_softmax(dim=-1)
        picked = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        count = valid.sum()
        ctx.save_for_backward(log_probs, safe, valid, count)
        return (picked * valid).sum() / count  # nan when every target is ignored, as in torch

    @staticmethod
    @once_differentiable  # backward uses forward's intermediates, so it is not differentiable itself
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_probs, safe, valid, count = ctx.saved_tensors
        grad = log_probs.exp()
        grad.scatter_add_(-1, safe.unsqueeze(-1), -torch.ones_like(grad[..., :1]))
        grad = grad * valid.unsqueeze(-1)
        return grad * (grad_output / count), None, None

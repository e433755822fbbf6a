"""Focal loss (Lin et al., 2017) with a float focusing parameter and a hand-written backward."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class FocalLoss(Function):
    """mean_i −(1 − p_t)^γ · log p_t, with p_t the softmax probability of the target class.

    With L = −(1 − p)^γ log p and dp_t/dz_j = p_t (δ_jt − p_j):
    dL/dz_j = [γ (1 − p_t)^(γ−1) p_t log p_t − (1 − p_t)^γ] (δ_jt − p_j).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
        log_probs = logits.log_softmax(dim=-1)
        log_pt = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        pt = log_pt.exp()
        ctx.save_for_backward(log_probs, target)
        ctx.gamma = gamma
        return (-((1 - pt) ** gamma) * log_pt).mean()

    @staticmethod
    @once_differentiable  # backward uses forward's intermediates, so it is not differentiable itself
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_probs, target = ctx.saved_tensors
        gamma = ctx.gamma
        probs = log_probs.exp()
        log_pt = log_probs.gather(-1, target.unsqueeze(-1))
        pt = log_pt.exp()
        one_minus = (1 - pt).clamp_min(0)
        coeff = gamma * one_minus.pow(gamma - 1) * pt * log_pt - one_minus.pow(gamma)
        onehot = torch.zeros_like(probs).scatter_(-1, target.unsqueeze(-1), 1.0)
        grad = coeff * (onehot - probs)
        return grad * (grad_output / target.numel()), None, None


def focal_loss_reference(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """The same loss in plain PyTorch ops (autograd differentiates it): FocalLoss's reference."""
    log_pt = logits.log_softmax(dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()

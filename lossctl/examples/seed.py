"""The seed example: an elementwise sum whose backward passes grad_output through."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function


class CustomLossFunction(Function):
    """out = input + target; d out / d input = d out / d target = 1."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.add(input, target)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_input = grad_output.clone() if ctx.needs_input_grad[0] else None
        grad_target = grad_output.clone() if ctx.needs_input_grad[1] else None
        return grad_input, grad_target

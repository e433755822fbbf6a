"""Functions under test: correct ones that must pass every check, and broken ones, each with one bug."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

# --------------------------------------------------------------------------- correct


class Square(Function):
    """Elementwise x², an old-style Function with a staticmethod forward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class ScaledSum(Function):
    """sum(x · w) · scale, with a classmethod forward and a plain-value parameter with a default."""

    @classmethod
    def forward(cls, ctx: Any, x: torch.Tensor, w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.scale = scale
        return (x * w).sum() * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, w = ctx.saved_tensors
        return grad * w * ctx.scale, grad * x * ctx.scale, None


class NewStyleMul(Function):
    """A new-style Function: forward without ctx, plus setup_context."""

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.saved_tensors
        return grad * y, grad * x


class MinMax(Function):
    """Two outputs, one of them an int64 index marked non-differentiable."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, index = x.max(dim=-1)
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        ctx.mark_non_differentiable(index)
        return values, index

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _grad_index: torch.Tensor | None) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        out = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device)
        return out.scatter(-1, index.unsqueeze(-1), grad.unsqueeze(-1))


class Float32Only(Function):
    """Refuses float64, like a kernel compiled for float32: gradcheck must SKIP, not fail."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise TypeError(f"kernel supports float32 only, got {x.dtype}")
        return x * 3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 3


class SquareModule(nn.Module):
    """A Module that wraps a Function, with a constructor argument."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Square.apply(x).mean() * self.scale


def square_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A plain callable that uses a Function."""
    return Square.apply(x - target).mean()


NOT_CALLABLE = 42


class NotAFunction:
    pass


# --------------------------------------------------------------------------- broken


class _MeanSquare(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x).mean()


class ClampedUpstream(_MeanSquare):
    """grad_output.clamp(-1, 1): gradcheck passes, linearity must fail."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad.clamp(-1, 1) * 2 * x / x.numel()


class NormalizedUpstream(_MeanSquare):
    """grad_output / |grad_output|: passes gradcheck (grad_output ±1), not linear."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        unit = grad / grad.abs().clamp_min(1e-12)
        return unit * 2 * x / x.numel()


class DoubledGrad(_MeanSquare):
    """Twice the right gradient."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 4 * x / x.numel()


class MissingMean(_MeanSquare):
    """Forgets the 1/numel of the mean."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 2 * x


class FlippedSign(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return -grad * 2 * x / x.numel()


class ZeroGrad(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.zeros_like(x) * grad


class NoneGrad(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> None:
        return None


class TooManyGrads(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (x,) = ctx.saved_tensors
        g = grad * 2 * x / x.numel()
        return g, g


class WrongShapeGrad(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad * 2 * x / x.numel()).sum(0)


class NaNGrad(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 2 * x / x.numel() / (x - x)


class RaisesInBackward(_MeanSquare):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise ValueError("backward exploded on purpose")


class RaisesInForward(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        raise KeyError("forward exploded on purpose")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class LogOfNegative(Function):
    """A forward that produces NaN on normal inputs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.log(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad / x


class ReturnsFloat(Function):
    """Returns a Python float beside the loss."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> Any:
        ctx.shape = x.shape
        return x.sum(), 3.5

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> torch.Tensor:
        return grad * torch.ones(ctx.shape, dtype=grad.dtype)


class Detached(nn.Module):
    """Returns a detached result: no output requires grad."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum().detach()


class BadConstructor(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        raise RuntimeError(f"cannot build with size={size}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# --------------------------------------------------------------------------- against a reference


class _CrossEntropy(Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        ctx.save_for_backward(log_probs, target)
        return -log_probs.gather(-1, target.unsqueeze(-1)).mean()


def _ce_grad(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    grad = log_probs.exp()
    grad.scatter_add_(-1, target.unsqueeze(-1), -torch.ones_like(grad[..., :1]))
    return grad / target.numel()


class CrossEntropyIgnoresUpstream(_CrossEntropy):
    """Returns d loss/d logits as if grad_output were 1 (a fused kernel that skips the multiply)."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, target = ctx.saved_tensors
        return _ce_grad(log_probs, target), None


class CrossEntropyOnePercentOff(_CrossEntropy):
    """A gradient 1% too large (a wrong constant in a fused kernel)."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, target = ctx.saved_tensors
        return _ce_grad(log_probs, target) * grad * 1.01, None


class SumThenDivideMSE(Function):
    """mean((input − target)²) as sum / n: the sum overflows float16 past ~30k elements."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).sum() / diff.numel()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff / diff.numel()
        return g, -g


class NaiveVariance(Function):
    """var(x) as E[x²] − E[x]²: exact in float64, catastrophic cancellation in float32."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x).mean() - x.mean() ** 2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 2 * (x - x.mean()) / x.numel()


class DotProduct(Function):
    """sum(x·w): correct, but ill-conditioned when the terms cancel (no false alarm wanted)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return (x * w).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        return grad * w, grad * x


class DropoutMSE(Function):
    """A correct random forward: the dropout mask is drawn in forward and saved for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mask = (torch.rand_like(x) > 0.3).to(x.dtype) / 0.7
        d = (x - t) * mask
        ctx.save_for_backward(d, mask)
        return (d * d).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, mask = ctx.saved_tensors
        g = grad * 2 * d * mask / d.numel()
        return g, -g


class MSEWithReduction(Function):
    """MSE with a `reduction` option, like torch's own losses."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        ctx.scale = 1.0 if reduction == "sum" else 1.0 / diff.numel()
        return (diff * diff).sum() * ctx.scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff * ctx.scale
        return g, -g, None


def weighted_by_keyword(x: torch.Tensor, *, weight: torch.Tensor) -> torch.Tensor:
    """A callable whose tensor `weight` can only be passed by keyword."""
    return (Square.apply(x) * weight).sum()


class Prints(Function):
    """Prints from forward: must not corrupt a JSON report on stdout."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        print("hello from forward")
        return x * 2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


class CallsSysExit(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(3)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad

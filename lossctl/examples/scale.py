"""Losses written the way large ones are (chunked rows, tiled columns, float32-only kernels), each
correct and with the bug that lives in one row, chunk or tile: the cases `make bench-scale` runs."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

# --------------------------------------------------------------------------- mean squared error


class MeanSquaredError(Function):
    """mean((input − target)²) with d/d input = 2(input − target)/numel."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return diff.square().mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return _mse_backward(ctx, lambda diff: diff * (2.0 / diff.numel()) * grad_output)


def _mse_backward(ctx: Any, input_grad: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    (diff,) = ctx.saved_tensors
    grad = input_grad(diff)
    return (grad if ctx.needs_input_grad[0] else None, -grad if ctx.needs_input_grad[1] else None)


class MSEMissingMean(MeanSquaredError):
    """Backward forgets the 1/numel of the mean."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return _mse_backward(ctx, lambda diff: 2.0 * diff * grad_output)


class MSELastRowZero(MeanSquaredError):
    """Backward leaves the last row's gradient at zero (a loop that stops one row early)."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        def input_grad(diff: torch.Tensor) -> torch.Tensor:
            grad = diff * (2.0 / diff.numel()) * grad_output
            grad[-1] = 0.0
            return grad

        return _mse_backward(ctx, input_grad)


class MSEFirstColumnSignFlipped(MeanSquaredError):
    """Backward flips the sign of the first column's gradient."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        def input_grad(diff: torch.Tensor) -> torch.Tensor:
            grad = diff * (2.0 / diff.numel()) * grad_output
            grad[:, 0] = -grad[:, 0]
            return grad

        return _mse_backward(ctx, input_grad)


class MSEIgnoresGradOutput(MeanSquaredError):
    """Backward returns d loss/d input without multiplying by grad_output."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return _mse_backward(ctx, lambda diff: diff * (2.0 / diff.numel()))


# --------------------------------------------------------------------------- cross-entropy in row chunks


class ChunkedCrossEntropy(Function):
    """Mean cross-entropy computed `chunk` rows at a time (what keeps a large vocabulary in memory)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        total = logits.new_zeros(())
        for start in range(0, logits.shape[0], chunk):
            rows = logits[start : start + chunk]
            picked = rows.gather(-1, target[start : start + chunk, None]).squeeze(-1)
            total = total + (rows.logsumexp(-1) - picked).sum()
        ctx.save_for_backward(logits, target)
        ctx.chunk = chunk
        return total / logits.shape[0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _chunked_backward(ctx, grad_output, own_mean_last=False), None, None


def _chunked_backward(ctx: Any, grad_output: torch.Tensor, *, own_mean_last: bool) -> torch.Tensor:
    logits, target = ctx.saved_tensors
    n = logits.shape[0]
    grad = torch.empty_like(logits)
    for start in range(0, n, ctx.chunk):
        stop = min(start + ctx.chunk, n)
        part = logits[start:stop].softmax(-1)
        part.scatter_add_(-1, target[start:stop, None], -torch.ones_like(part[:, :1]))
        partial = stop - start < ctx.chunk
        grad[start:stop] = part / (stop - start if own_mean_last and partial else n)
    return grad * grad_output


class ChunkedCrossEntropyLastChunkOwnMean(ChunkedCrossEntropy):
    """Backward averages the last, partial chunk over its own rows instead of over all rows."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _chunked_backward(ctx, grad_output, own_mean_last=True), None, None


# --------------------------------------------------------------------------- cross-entropy in column tiles


class TiledCrossEntropy(Function):
    """Mean cross-entropy whose backward writes the vocabulary in tiles of `tile` columns."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, tile: int = 2048) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        ctx.save_for_backward(log_probs, target)
        ctx.tile = tile
        return -log_probs.gather(-1, target[:, None]).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _tiled_backward(ctx, grad_output, wrong_offset=False), None, None


def _tiled_backward(ctx: Any, grad_output: torch.Tensor, *, wrong_offset: bool) -> torch.Tensor:
    log_probs, target = ctx.saved_tensors
    n, vocab = log_probs.shape
    grad = torch.empty_like(log_probs)
    rows = torch.arange(n, device=target.device)
    for start in range(0, vocab, ctx.tile):
        stop = min(start + ctx.tile, vocab)
        part = log_probs[:, start:stop].exp()
        local = target - (0 if wrong_offset else start)
        inside = (local >= 0) & (local < stop - start)
        part[rows[inside], local[inside]] -= 1.0
        grad[:, start:stop] = part
    return grad * (grad_output / n)


class TiledCrossEntropyWrongOffset(TiledCrossEntropy):
    """Backward finds the target's column with tile 0's offset, so later tiles drop the −1."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _tiled_backward(ctx, grad_output, wrong_offset=True), None, None


# --------------------------------------------------------------------------- a float32-only kernel


class Float32OnlyCrossEntropy(Function):
    """Mean cross-entropy that, like many Triton kernels, refuses float64 and computes in float32."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"kernel supports float32, float16 and bfloat16 logits, got {logits.dtype}")
        log_probs = logits.float().log_softmax(-1)
        ctx.save_for_backward(log_probs, target)
        ctx.dtype = logits.dtype
        return (-log_probs.gather(-1, target[:, None]).mean()).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _float32_backward(ctx, grad_output.float()), None


def _float32_backward(ctx: Any, scale: torch.Tensor) -> torch.Tensor:
    log_probs, target = ctx.saved_tensors
    grad = log_probs.exp()
    grad.scatter_add_(-1, target[:, None], -torch.ones_like(grad[:, :1]))
    return (grad * (scale / target.numel())).to(ctx.dtype)


class Float32OnlyCrossEntropyIgnoresGradOutput(Float32OnlyCrossEntropy):
    """The float32-only kernel's backward ignores grad_output."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _float32_backward(ctx, torch.ones_like(grad_output, dtype=torch.float32)), None

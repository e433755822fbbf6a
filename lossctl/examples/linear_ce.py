"""Linear layer + cross-entropy in chunks of rows, so the [N, V] logits never exist at once.

The loss large-vocabulary language models train with (Liger-Kernel's fused linear cross-entropy,
Apple's cut-cross-entropy): mean over the rows whose target is not `ignore_index` of
logsumexp(h_i·Wᵀ) − h_i·W[t_i]. Forward keeps one [chunk, V] block of logits at a time and saves
only the inputs and one logsumexp per row; backward recomputes each block's logits from them.

    lossctl check configs/linear_ce.yaml
    lossctl bench configs/linear_ce.yaml --dims N=1024,4096 --dims D=256 --dims V=8192
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -100


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Logits and their softmax in at least float32, whatever the inputs' dtype."""
    return torch.promote_types(dtype, torch.float32)


class LinearCrossEntropy(Function):
    """cross_entropy(hidden @ weight.T, target, ignore_index) without materializing the logits.

    hidden [N, D], weight [V, D], target [N] (int64, `ignore_index` marks rows to skip);
    `chunk_size` rows of logits are computed at a time (peak extra memory ~ chunk_size·V floats).
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        ignore_index: int = IGNORE_INDEX,
        chunk_size: int = 1024,
    ) -> torch.Tensor:
        acc = _accumulation_dtype(hidden.dtype)
        valid = target != ignore_index
        safe_target = target.masked_fill(~valid, 0)  # gather needs an in-range index on ignored rows too
        lse = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        total = torch.zeros((), dtype=acc, device=hidden.device)
        compute = hidden.dtype
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            product = hidden[rows] @ weight.T
            compute = product.dtype  # under autocast: the autocast dtype, whatever the inputs'
            logits = product.to(acc)
            lse[rows] = logits.logsumexp(dim=-1)
            picked = logits.gather(-1, safe_target[rows].unsqueeze(-1)).squeeze(-1)
            total += ((lse[rows] - picked) * valid[rows]).sum()
        count = valid.sum()
        ctx.save_for_backward(hidden, weight, safe_target, valid, lse)
        ctx.chunk_size = chunk_size
        # Backward runs outside autocast: it recomputes in the dtype forward computed in (what
        # @custom_bwd would restore), so bfloat16 activations meet float32 weights there too.
        ctx.compute_dtype = compute
        # Like F.cross_entropy: NaN when every row is ignored (0 / 0).
        return (total / count).to(hidden.dtype)

    @staticmethod
    @once_differentiable  # backward recomputes the logits with no graph of its own
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, safe_target, valid, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        acc = lse.dtype
        scale = grad_output.to(acc) / valid.sum()
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_weight else None
        w = weight.to(ctx.compute_dtype)
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            h = hidden[rows].to(ctx.compute_dtype)
            # d loss / d logits = (softmax − onehot(target)) · scale, zero on ignored rows
            grad_logits = ((h @ w.T).to(acc) - lse[rows].unsqueeze(-1)).exp()
            grad_logits.scatter_add_(-1, safe_target[rows].unsqueeze(-1), -torch.ones_like(lse[rows]).unsqueeze(-1))
            grad_logits *= (valid[rows] * scale).unsqueeze(-1)
            grad_logits = grad_logits.to(ctx.compute_dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits @ w
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ h).to(acc)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def with_ignored_rows(target: torch.Tensor, every: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """`target` with every `every`-th row (rows every−1, 2·every−1, …) set to `ignore_index`.

    Random targets never hit ignore_index by themselves, so the spec asks for ignored rows by a
    count: spread over every chunk, chunk tails included, and none when N < every (so a case
    shrunk to N=1 still has a row to average)."""
    if every <= 0:
        return target
    ignored = torch.arange(target.shape[0], device=target.device) % every == every - 1
    return target.masked_fill(ignored, ignore_index)


class LinearCrossEntropyIgnoring(Function):
    """LinearCrossEntropy with every `ignore_every`-th target set to `ignore_index` first: what
    configs/linear_ce.yaml checks, so ignored rows are always among the inputs."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        ignore_every: int = 4,
        ignore_index: int = IGNORE_INDEX,
        chunk_size: int = 1024,
    ) -> torch.Tensor:
        target = with_ignored_rows(target, ignore_every, ignore_index)
        return LinearCrossEntropy.forward(ctx, hidden, weight, target, ignore_index, chunk_size)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return (*LinearCrossEntropy.backward.__wrapped__(ctx, grad_output), None)


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ignore_every: int = 4,
    ignore_index: int = IGNORE_INDEX,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The plain version: the whole [N, V] logits, then F.cross_entropy (`chunk_size` is unused)."""
    del chunk_size
    return F.cross_entropy(
        hidden @ weight.T, with_ignored_rows(target, ignore_every, ignore_index), ignore_index=ignore_index
    )

"""Distributed losses, correct and deliberately broken, for `lossctl check configs/distributed/`.

Each runs on every rank of a process group on that rank's shard of the batch (or of the vocab).
At world size 1 every collective is the identity, so the broken ones pass a single-process test.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable


def _world() -> tuple[int, int]:
    return dist.get_rank(), dist.get_world_size()


class AllGather(Function):
    """All-gather along dim 0 that carries gradients back: rank r's slice of every rank's
    gradient, summed (the backward of a gather is a reduce-scatter)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        rank, world = _world()
        ctx.rank, ctx.world = rank, world
        pieces = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.cat(pieces)

    @staticmethod
    @once_differentiable  # dist.all_reduce is invisible to autograd
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad.chunk(ctx.world)[ctx.rank]


class AllReduceSum(Function):
    """Sum over ranks whose backward sums the ranks' gradients too."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    @once_differentiable  # dist.all_reduce is invisible to autograd
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def _clip(image: torch.Tensor, text: torch.Tensor, all_image: torch.Tensor, all_text: torch.Tensor, scale: float):
    """Symmetric InfoNCE for this rank's rows against every rank's (open_clip's local_loss)."""
    rank, _ = _world()
    labels = torch.arange(image.shape[0], device=image.device) + rank * image.shape[0]
    logits_per_image = scale * image @ all_text.T
    logits_per_text = scale * text @ all_image.T
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """CLIP's contrastive loss with an autograd-aware all-gather: correct."""
    return _clip(image, text, AllGather.apply(image), AllGather.apply(text), scale)


def clip_loss_no_grad_gather(image: torch.Tensor, text: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """BROKEN: gathers with dist.all_gather into buffers, which autograd does not see. Putting the
    local tensor back in its slot (a common fix) restores only this rank's own term: the other
    ranks' contributions to this rank's gradient are lost (open_clip #616, lightly #1977)."""
    rank, world = _world()
    gathered = []
    for tensor in (image, text):
        pieces = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(pieces, tensor.detach().contiguous())
        pieces[rank] = tensor
        gathered.append(torch.cat(pieces))
    return _clip(image, text, gathered[0], gathered[1], scale)


def clip_loss_single(image: torch.Tensor, text: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """The same loss on one process, for `reference:`."""
    labels = torch.arange(image.shape[0], device=image.device)
    logits = scale * image @ text.T
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid elements of the GLOBAL batch: each rank divides its sum by
    the all-reduced count (use `combine: sum`). Correct."""
    count = mask.sum().to(pred.dtype)
    dist.all_reduce(count)  # the count takes no gradient: a plain all-reduce is right here
    return ((pred - target) ** 2 * mask).sum() / count


def masked_mse_local_count(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BROKEN: divides by this rank's count, so the ranks' sum is not the global mean."""
    return ((pred - target) ** 2 * mask).sum() / mask.sum().to(pred.dtype)


class VocabParallelCrossEntropy(Function):
    """Cross-entropy with the logits split over the vocab dim across ranks (Megatron-style): the
    max, the target's logit and the softmax denominator are all-reduced; backward writes
    softmax − one-hot on this rank's vocab slice.

    Under lossctl's convention the gradient of every rank's (replicated) loss reaches every rank,
    so backward sums grad_output over ranks first."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rank, _ = _world()
        vocab = logits.shape[-1]
        start = rank * vocab
        logits_max = logits.max(dim=-1).values
        dist.all_reduce(logits_max, op=dist.ReduceOp.MAX)
        shifted = logits - logits_max.unsqueeze(-1)
        local = (target >= start) & (target < start + vocab)
        index = (target - start).clamp(0, vocab - 1)
        predicted = shifted.gather(-1, index.unsqueeze(-1)).squeeze(-1) * local
        dist.all_reduce(predicted)
        exp = shifted.exp()
        sum_exp = exp.sum(-1)
        dist.all_reduce(sum_exp)
        loss = (sum_exp.log() - predicted).mean()
        ctx.save_for_backward(exp / sum_exp.unsqueeze(-1), local, index)
        return loss

    @staticmethod
    @once_differentiable  # backward uses forward's softmax: not differentiable itself
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        softmax, local, index = ctx.saved_tensors
        grad_total = grad_output.contiguous().clone()
        dist.all_reduce(grad_total)
        onehot = torch.zeros_like(softmax).scatter_(-1, index.unsqueeze(-1), 1.0) * local.unsqueeze(-1)
        return (softmax - onehot) * (grad_total / softmax.shape[0]), None


def hanging_rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BROKEN: the last rank skips the all-reduce the others wait in (as a data-dependent early
    return does), so they hang until the timeout."""
    rank, world = _world()
    loss = ((pred - target) ** 2).sum()
    count = torch.tensor(float(pred.numel()), dtype=pred.dtype)
    if world == 1 or rank != world - 1:
        dist.all_reduce(count)
    return loss / count


def clip_loss_summed(image: torch.Tensor, text: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """BROKEN: all-reduces the loss with a sum, so every rank holds W × the global mean."""
    return AllReduceSum.apply(clip_loss(image, text, scale))

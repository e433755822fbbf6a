"""What a W-rank program means: how ranks' outputs combine into the global output, how their
gradients assemble into the global gradient, and the cotangents each rank backpropagates."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossctl.case import random_like
from lossctl.inputs import derive_seed


def combine_mode(combine: str | None, output: torch.Tensor) -> str:
    """The spec's `combine:`, else mean for a 0-d output (a loss) and cat along dim 0 otherwise
    (per-sample outputs of a sharded batch)."""
    if combine is not None:
        return combine
    return "mean" if output.dim() == 0 else "cat"


def combine_outputs(mode: str, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The global output from each rank's output (rank order)."""
    if mode == "cat":
        return torch.cat([o.reshape(1) if o.dim() == 0 else o for o in outputs])
    stacked = torch.stack(list(outputs))
    return stacked.mean(0) if mode == "mean" else stacked.sum(0)


def assemble_gradient(shard: int | None, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The gradient for the global tensor: shards side by side along their dim; an input every
    rank holds whole gets the sum of the ranks' gradients (as DDP's all-reduce sums them)."""
    if shard is None:
        return torch.stack(list(grads)).sum(0)
    return torch.cat(list(grads), dim=shard)


def rank_cotangent(output: torch.Tensor, seed: int, world_size: int, rank: int, index: int) -> torch.Tensor:
    """An independent random cotangent per rank (the contract holds for any)."""
    return random_like(output, derive_seed(seed, "dist-cotangent", world_size, rank, index))


def global_cotangent(shape: Sequence[int], like: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """One seeded cotangent for the global output, the same for every world size."""
    template = torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
    return random_like(template, derive_seed(seed, "dist-global-cotangent", index))


def convention_cotangent(
    output: torch.Tensor, mode: str, seed: int, world_size: int, rank: int, index: int
) -> torch.Tensor:
    """Rank r's share of a global cotangent g, chosen so the ranks' summed backward equals the
    global program's vector-Jacobian product with g: g/W for mean (so W× g per rank is the
    DDP convention), g for sum, chunk r of g for cat."""
    if mode == "cat":
        local = output.reshape(1) if output.dim() == 0 else output
        shape = (local.shape[0] * world_size, *local.shape[1:])
        chunk = global_cotangent(shape, output, seed, index).chunk(world_size)[rank]
        return chunk.reshape(output.shape)
    g = global_cotangent(output.shape, output, seed, index)
    return g / world_size if mode == "mean" else g

"""Distributed Functions that fail on one rank, for the fault tests of lossctl.distributed."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def raises_on_rank_1(x: torch.Tensor) -> torch.Tensor:
    """Rank 1 raises before the all-reduce the others wait in."""
    if dist.get_world_size() > 1 and dist.get_rank() == 1:
        raise ValueError("boom on rank 1")
    total = x.sum().detach().clone()
    dist.all_reduce(total)
    return (x * x).sum() / total.abs().clamp_min(1.0)


def dies_on_rank_1(x: torch.Tensor) -> torch.Tensor:
    """Rank 1's process exits in the middle of forward."""
    if dist.get_world_size() > 1 and dist.get_rank() == 1:
        os._exit(3)
    count = torch.ones((), dtype=x.dtype)
    dist.all_reduce(count)
    return (x * x).sum() / count

"""Distributed losses: a Function that calls torch.distributed, run on W real ranks and checked
against the single-process truth (see README "Distributed losses")."""

from __future__ import annotations

from lossctl.spec import Spec

CHECK_IDS = (
    "dist_forward",
    "dist_gradient",
    "dist_reference",
    "dist_ranks",
    "dist_determinism",
    "dist_world_sizes",
)
"""The checks a distributed case runs, in order (the single-process battery runs at W=1)."""

DESCRIPTIONS = {
    "dist_forward": "the global output (ranks' outputs combined) equals the single-process reference's",
    "dist_gradient": "each rank's gradient equals finite differences of the whole W-rank program",
    "dist_reference": "each rank's gradient equals the reference's on its shard, under the convention",
    "dist_ranks": "every rank leaves a gradient, finite, on every input that requires grad",
    "dist_determinism": "two identical runs give bitwise equal outputs and gradients on every rank",
    "dist_world_sizes": "the global output and gradient agree across the world sizes of a sweep",
}


def is_distributed(spec: Spec) -> bool:
    """Whether a spec runs on ranks (it has `world_size:`)."""
    return spec.world_size is not None

"""A loss whose forward is slow for its size (as a kernel launch, a remote call or a Python loop can
be), correct and broken: the cases where a check's method must fit the budget, not the tensor size.
The math is bench-scale's mean squared error (lossctl.examples.scale); only forward's time differs."""

from __future__ import annotations

import time
from typing import Any

import torch

from lossctl.examples.scale import MeanSquaredError, MSEMissingMean

FORWARD_SECONDS = 0.2
"""What every forward costs, whatever the size: a budget of 60 s fits about 300 forwards."""


def _slow_forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    time.sleep(FORWARD_SECONDS)
    return MeanSquaredError.forward(ctx, input, target)


class SlowMeanSquaredError(MeanSquaredError):
    """mean((input − target)²), with a forward that takes FORWARD_SECONDS."""

    forward = staticmethod(_slow_forward)


class SlowMSEMissingMean(MSEMissingMean):
    """The slow forward, and a backward that forgets the 1/numel of the mean."""

    forward = staticmethod(_slow_forward)

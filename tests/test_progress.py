"""Honest timeouts and progress: a timeout names the check, the time and what finished, and tells a
Function that hangs from a case that needs more time; on a terminal a live line shows each running case."""

from __future__ import annotations

import re

import pytest

from lossctl import activity
from lossctl.activity import Where

# ------------------------------------------------------------------ the activity record and the stack


def test_activity_counts_calls_into_the_function():
    import torch

    from tests.progress_fns import SlowButSteady

    before = activity.current()
    activity.use(activity.new_slots())
    try:
        activity.begin_check(now=0.0)
        x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        activity.call(SlowButSteady.apply, [x], {})
        with pytest.raises(TypeError):
            activity.call(SlowButSteady.apply, [], {})  # raised: returned all the same
        seen = activity.read()
        assert (seen.forward_returns, seen.last_event) == (2, activity.FORWARD_RETURNED)
        assert seen.last_return is not None and seen.last_return > 0
        activity.begin_check()
        assert activity.read().forward_returns == 0 and activity.read().last_return is None
    finally:
        activity.use(before)


def test_the_stack_says_forward_or_backward_and_where():
    import sys

    import torch

    seen: list[Where | None] = []

    class Spy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(activity.locate(sys._getframe()))
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            seen.append(activity.locate(sys._getframe()))
            return grad

    x = torch.ones(2, requires_grad=True)
    torch.autograd.grad(Spy.apply(x).sum(), [x])
    forward, backward = seen
    assert forward is not None and backward is not None
    assert (forward.phase, backward.phase) == ("forward", "backward")
    assert re.fullmatch(r"tests/test_progress\.py:\d+ in `backward`", backward.place), backward.place
    assert Where.decode(backward.encode()) == backward

"""`backward`: a seeded random grad_output gives a finite gradient of the right shape for every input."""

from __future__ import annotations

import torch

from lossctl.case import Case
from lossctl.checks.base import Check
from lossctl.checks.common import first_nonfinite, require_differentiable_inputs
from lossctl.report import Outcome


def check_backward(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    values = case.fresh()
    _, grads = case.vjp(values, "backward")
    norms = {}
    for name, i, grad in zip(case.diff_names, case.diff_indices, grads, strict=True):
        x = values[i]
        if grad is None:
            return Outcome.failed(
                f"no gradient for `{name}`: backward returned None for it, or forward does not use it",
                hint="return a gradient for every input whose ctx.needs_input_grad is set",
            )
        if grad.shape != x.shape or grad.dtype != x.dtype:
            return Outcome.failed(
                f"gradient of `{name}` is {tuple(grad.shape)} {grad.dtype}, the input is {tuple(x.shape)} {x.dtype}"
            )
        count, index, value = first_nonfinite(grad)
        if count:
            return Outcome.failed(
                f"gradient of `{name}` has {count} non-finite value{'s' * (count > 1)} "
                f"(first {value} at {list(index)})",
                hint="look for 0/0, log(0) or overflow in backward",
            )
        norms[name] = float(torch.linalg.vector_norm(grad.double()))
    listing = ", ".join(f"‖∂{n}‖={v:.3g}" for n, v in norms.items())
    return Outcome.passed(f"finite, right shapes: {listing}", data={"grad_norms": norms})


CHECK = Check.of("backward", check_backward)

"""`grad_output_intact`: backward must not modify grad_output in place."""

from __future__ import annotations

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check
from lossctl.checks.common import require_differentiable_inputs
from lossctl.report import Outcome


def check_grad_output_intact(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    values = case.fresh()
    outputs = differentiable_outputs(case.call(values))
    cotangents = case.random_cotangents(outputs, "grad_output_intact")
    before = [v.clone() for v in cotangents]
    case.backward(outputs, values, cotangents)
    for k, (now, was) in enumerate(zip(cotangents, before, strict=True)):
        if not torch.equal(now, was):
            changed = int((now != was).sum())
            return Outcome.failed(
                f"backward modified grad_output{'' if len(outputs) == 1 else f' {k}'} in place "
                f"({changed} of {now.numel()} elements changed)",
                hint="use out-of-place ops on grad_output (grad_output * x, not grad_output.mul_(x)): it is "
                "shared with every other consumer of the output, whose gradients it corrupts",
                data={"output": k, "changed_elements": changed},
            )
    return Outcome.passed(f"grad_output unchanged after backward ({len(outputs)} output{'s' * (len(outputs) != 1)})")


CHECK = Check.of("grad_output_intact", check_grad_output_intact)

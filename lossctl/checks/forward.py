"""`forward`: the Function runs, returns tensors, and every floating output is finite."""

from __future__ import annotations

import torch

from lossctl.case import Case
from lossctl.checks.base import Check
from lossctl.checks.common import first_nonfinite
from lossctl.report import Outcome


def describe_outputs(outputs: tuple[object, ...]) -> str:
    parts = []
    for i, out in enumerate(outputs):
        label = "out" if len(outputs) == 1 else f"out{i}"
        if isinstance(out, torch.Tensor):
            parts.append(f"{label} {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')}")
        else:
            parts.append(f"{label} {type(out).__name__}")
    return ", ".join(parts)


def check_forward(case: Case) -> Outcome:
    outputs = case.forward()
    shapes = describe_outputs(outputs)
    data = {
        "outputs": [
            {"shape": list(o.shape), "dtype": str(o.dtype).removeprefix("torch.")}
            if isinstance(o, torch.Tensor)
            else {"type": type(o).__name__}
            for o in outputs
        ]
    }
    if not outputs:
        return Outcome.failed("forward returned an empty tuple", data=data)
    for i, out in enumerate(outputs):
        if not isinstance(out, torch.Tensor):
            return Outcome.failed(
                f"output {i} is a {type(out).__name__}, not a tensor ({shapes})",
                hint="return tensors from forward (wrap numbers with torch.tensor)",
                data=data,
            )
        if out.device != case.device and out.device.type != case.device.type:
            return Outcome.failed(f"output {i} is on {out.device}, the inputs on {case.device}", data=data)
        if out.is_floating_point() or out.is_complex():
            count, index, value = first_nonfinite(out)
            if count:
                return Outcome.failed(
                    f"output {i} has {count} non-finite value{'s' * (count > 1)} "
                    f"(first {value} at {list(index)}) — {shapes}",
                    hint="look for log(0), division by zero or exp overflow in forward",
                    data=data,
                )
    return Outcome.passed(shapes, data=data)


CHECK = Check.of("forward", check_forward)

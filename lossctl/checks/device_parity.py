"""`device_parity`: on a GPU, outputs and gradients equal the CPU float64 result within the
working dtype's tolerance (√ε of the dtype, relative to each tensor's norm).

A GPU kernel that is wrong where the CPU one is right (a different code path, a race, a tail
block mishandled) passes every check that compares the GPU with itself. This one compares the
run on the case's device with the same Function on the CPU in float64, on the same input values
and the same seeded grad_output. Skipped on the CPU, where there is nothing to compare.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, rel_error, sqrt_eps
from lossctl.report import Outcome

CPU = torch.device("cpu")
HINT = (
    "the device's kernel differs from the CPU path: a different branch for CUDA tensors, a race or "
    "missing synchronization, a block or tail of the input left unprocessed?"
)


def check_device_parity(case: Case) -> Outcome:
    if case.device.type == "cpu":
        raise Skip("compares a GPU run with the CPU float64 result: this run is on the CPU (use --device cuda)")
    return compare_with_cpu_float64(case)


def _to_cpu_float64(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    copy = value.detach().to(CPU)
    if copy.is_floating_point():
        copy = copy.to(torch.float64)
    return copy.requires_grad_(value.requires_grad)


def compare_with_cpu_float64(case: Case) -> Outcome:
    """The run on `case.device` in the working dtype against the CPU run in float64. Works on any
    device (on the CPU it compares the working dtype with float64), so its logic is testable
    without a GPU."""
    if case.forward_is_random():
        raise Skip("forward draws random numbers: the devices' random streams differ")
    dtype = case.working_dtype
    values = case.fresh()
    outputs = differentiable_outputs(case.call(values))
    if not outputs:
        raise Skip("no differentiable output to compare")
    cotangents = case.random_cotangents(outputs, "device_parity")
    inputs = [values[i] for i in case.diff_indices]
    grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True) if inputs else ()

    twin = case.function()
    if isinstance(twin, torch.nn.Module):  # a copy, so its parameters are the ones the device run used
        twin = copy.deepcopy(twin).to(device=CPU, dtype=torch.float64)
    cpu_values = [_to_cpu_float64(v) for v in values]
    cpu_kwargs = {k: _to_cpu_float64(v) for k, v in case.kwargs.items()}
    result = twin(*cpu_values, **cpu_kwargs)
    cpu_outputs = differentiable_outputs(result if isinstance(result, tuple | list) else (result,))
    cpu_inputs = [cpu_values[i] for i in case.diff_indices]
    cpu_cotangents = [_to_cpu_float64(c).detach() for c in cotangents]
    cpu_grads = torch.autograd.grad(cpu_outputs, cpu_inputs, cpu_cotangents, allow_unused=True) if cpu_inputs else ()

    tol = sqrt_eps(dtype)
    pairs = [(f"output {i}", a, b) for i, (a, b) in enumerate(zip(outputs, cpu_outputs, strict=True))]
    pairs += [(f"∂{case.names[i]}", a, b) for i, a, b in zip(case.diff_indices, grads, cpu_grads, strict=True)]
    errors: dict[str, float] = {}
    for name, got, want in pairs:
        if got is None or want is None:
            if (got is None) != (want is None):
                errors[name] = float("inf")
            continue
        errors[name] = rel_error(got.to(CPU), want)
    worst = max(errors, key=lambda n: errors[n])
    data = {"device": str(case.device), "dtype": dtype_name(dtype), "tolerance": tol, "errors": errors}
    summary = ", ".join(f"{name} {err:.1e}" for name, err in errors.items())
    if errors[worst] > tol:
        return Outcome.failed(
            f"{worst} on {case.device} differs from the CPU float64 result: rel err {errors[worst]:.3g} > "
            f"{tol:.2g} (√ε of {dtype_name(dtype)}); {summary}",
            hint=HINT,
            data=data,
        )
    return Outcome.passed(
        f"{case.device} {dtype_name(dtype)} equals CPU float64 within {tol:.2g}: {summary}", data=data
    )


CHECK = Check.of("device_parity", check_device_parity)

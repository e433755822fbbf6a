"""`raw_backward`: what backward really returns, before autograd validates and silently casts it."""

from __future__ import annotations

from typing import Any

import torch

from lossctl.case import Case, all_cotangents, differentiable_outputs
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, require_differentiable_inputs, require_function
from lossctl.report import Outcome


def raw_gradients(case: Case, values: list[Any]) -> tuple[Any, ...]:
    """Call the Function's backward node directly with seeded grad_outputs (the engine's own
    validation and casting are bypassed). Non-differentiable outputs get zeros, as the engine
    gives them."""
    outputs = case.call(values)
    node = next((o.grad_fn for o in differentiable_outputs(outputs)), None)
    if node is None:
        raise Skip("no output has a grad_fn (see backward)")
    cotangents = case.random_cotangents(differentiable_outputs(outputs), "backward")
    with torch.no_grad():  # as the engine runs backward without create_graph
        result = node.apply(*all_cotangents(outputs, cotangents))
    return result if isinstance(result, tuple) else (result,)


def check_raw_backward(case: Case) -> Outcome:
    require_function(case, "calling backward directly")
    require_differentiable_inputs(case)
    values = case.fresh()
    grads = raw_gradients(case, values)
    names = case.names
    if len(grads) != len(names):
        return Outcome.failed(
            f"backward returned {len(grads)} gradient{'s' * (len(grads) != 1)} for {len(names)} forward "
            f"argument{'s' * (len(names) != 1)} ({', '.join(names)})",
            hint="return exactly one gradient per forward argument, None for non-tensors",
            data={"returned": len(grads), "expected": len(names)},
        )
    problems: list[str] = []
    for name, value, grad in zip(names, values, grads, strict=True):
        if grad is None:
            continue
        if not isinstance(value, torch.Tensor):
            problems.append(f"a gradient for non-tensor argument `{name}` ({type(value).__name__}): return None for it")
            continue
        if not isinstance(grad, torch.Tensor):
            problems.append(f"gradient for `{name}` is a {type(grad).__name__}, not a tensor")
            continue
        if not (value.is_floating_point() or value.is_complex()):
            problems.append(
                f"a gradient for non-differentiable argument `{name}` ({dtype_name(value.dtype)}): return None"
            )
            continue
        if grad.dtype != value.dtype:
            problems.append(
                f"gradient for `{name}` is {dtype_name(grad.dtype)}, the input is {dtype_name(value.dtype)} "
                "(autograd casts it silently, losing precision)"
            )
        if grad.shape != value.shape:
            problems.append(f"gradient for `{name}` has shape {tuple(grad.shape)}, the input {tuple(value.shape)}")
        if grad.device != value.device:
            problems.append(f"gradient for `{name}` is on {grad.device}, the input on {value.device}")
    if problems:
        return Outcome.failed(
            problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
            explain="\n".join(problems),
            data={"problems": problems},
        )
    return Outcome.passed(
        f"{len(grads)} gradient{'s' * (len(grads) != 1)}, one per argument, each with its input's dtype, "
        "shape and device"
    )


CHECK = Check.of("raw_backward", check_raw_backward)

"""`noncontiguous`: the same case with non-contiguous inputs (and grad_output) gives the same results."""

from __future__ import annotations

from typing import Any

import torch

from lossctl.case import Case, differentiable_outputs, engine_rejection
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, rel_error, require_differentiable_inputs, sqrt_eps, worst_rel_error
from lossctl.loader import describe_exception
from lossctl.report import Outcome

HINT = "the code assumes contiguous memory (.view, data_ptr, a kernel): call .contiguous() on inputs and grad_output"


def noncontiguous_like(tensor: torch.Tensor) -> torch.Tensor:
    """A non-contiguous tensor with the same values: a transposed layout for matrices, a strided one
    otherwise. Tensors with fewer than two elements stay as they are."""
    source = tensor.detach()
    if source.dim() >= 2 and source.shape[-1] > 1 and source.shape[-2] > 1:
        copy = source.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif source.numel() > 1:
        copy = torch.empty((*source.shape, 2), dtype=source.dtype, device=source.device)[..., 0]
        copy.copy_(source)
    else:
        copy = source.clone()
    return copy.requires_grad_(tensor.requires_grad)


def check_noncontiguous(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    if case.forward_is_random():
        raise Skip("forward draws random numbers, and a strided layout changes which element gets which random number")
    values = case.fresh()
    outputs = case.call(values)
    cotangents = case.random_cotangents(differentiable_outputs(outputs), "noncontiguous")
    grads = case.backward(outputs, values, cotangents)

    strided: list[Any] = [noncontiguous_like(v) if isinstance(v, torch.Tensor) else v for v in case.values]
    changed = [
        n for n, v in zip(case.names, strided, strict=True) if isinstance(v, torch.Tensor) and not v.is_contiguous()
    ]
    if not changed:
        raise Skip("no input has two or more elements, so none can be made non-contiguous")
    strided_cotangents = [noncontiguous_like(v) for v in cotangents]
    try:
        outputs_nc = case.call(strided)
        grads_nc = case.backward(outputs_nc, strided, strided_cotangents)
    except Exception as error:
        if engine_rejection(case, error):
            raise  # reported once, by the runner
        return Outcome.failed(f"raises with non-contiguous inputs: {describe_exception(error)}", hint=HINT)
    tol = sqrt_eps(case.working_dtype)
    tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
    tensors_nc = [o for o in outputs_nc if isinstance(o, torch.Tensor)]
    for k, (a, b) in enumerate(zip(tensors_nc, tensors, strict=True)):
        err = rel_error(a.float() if not a.is_floating_point() else a, b.float() if not b.is_floating_point() else b)
        if err > tol:
            return Outcome.failed(
                f"output {k} differs with non-contiguous inputs (rel err {err:.3g})", hint=HINT, data={"rel_err": err}
            )
    err, name = worst_rel_error(list(grads_nc), list(grads), case.diff_names)
    if err > tol:
        return Outcome.failed(
            f"gradient of `{name}` differs with non-contiguous inputs and grad_output (rel err {err:.3g})",
            hint=HINT,
            data={"rel_err": err, "argument": name},
        )
    return Outcome.passed(
        f"same outputs and gradients with non-contiguous {', '.join(changed)} and grad_output "
        f"(rel err {err:.1e}, {dtype_name(case.working_dtype)}); detects a difference ≥ {tol:.1e} of the norm "
        "over every element",
        data={"rel_err": err, "noncontiguous": changed},
    )


CHECK = Check.of("noncontiguous", check_noncontiguous)

__all__ = ["CHECK", "noncontiguous_like", "rel_error"]

"""`vmap`: a Function that supports torch.func.vmap gives the per-sample loop's results, batched."""

from __future__ import annotations

from typing import Any

import torch

from lossctl.case import Case
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import require_differentiable_inputs, require_function, sqrt_eps, worst_rel_error
from lossctl.inputs import derive_seed
from lossctl.loader import describe_exception
from lossctl.report import Outcome

BATCH = 3


def supports_vmap(fn: type) -> bool:
    return bool(getattr(fn, "generate_vmap_rule", False)) or fn.vmap is not torch.autograd.Function.vmap


def check_vmap(case: Case) -> Outcome:
    require_function(case, "vmap")
    if not supports_vmap(case.target.obj):
        raise Skip("the Function does not support torch.func.vmap (no generate_vmap_rule, no vmap staticmethod)")
    require_differentiable_inputs(case)
    values = case.fresh()
    gen = torch.Generator().manual_seed(derive_seed(case.seed, "vmap"))
    # B samples of each differentiable input: the case's values, then perturbed copies.
    samples = [
        torch.stack(
            [x.detach()]
            + [
                x.detach() + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
                for _ in range(BATCH - 1)
            ]
        )
        for x in (values[i] for i in case.diff_indices)
    ]

    def f(*diff: torch.Tensor) -> Any:
        outs = case.call(case.substitute(values, diff))
        return outs[0] if len(outs) == 1 else outs

    # Cotangents for every floating output (the samples are detached, so none requires grad here).
    outputs = [case.call(case.substitute(values, [s[b] for s in samples])) for b in range(BATCH)]
    floating = [[o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()] for outs in outputs]
    cotangents = [case.random_cotangents(floating[b], f"vmap-{b}") for b in range(BATCH)]

    def per_sample(b: int) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        leaves = [s[b].clone().requires_grad_() for s in samples]
        inputs = case.substitute(values, leaves)
        outs = case.call(inputs)
        grads = case.backward(outs, inputs, cotangents[b])
        return [o.detach() for o in outs if isinstance(o, torch.Tensor)], grads

    def vjp_one(*args: torch.Tensor) -> tuple[Any, Any]:
        diff, v = args[: len(samples)], args[len(samples) :]
        out, pullback = torch.func.vjp(f, *diff)
        return out, pullback(v[0] if len(v) == 1 else tuple(v))

    stacked_v = [torch.stack([cotangents[b][k] for b in range(BATCH)]) for k in range(len(cotangents[0]))]
    try:
        batched_out, batched_grads = torch.func.vmap(vjp_one)(*samples, *stacked_v)
    except Exception as error:
        return Outcome.failed(
            f"torch.func.vmap over forward and backward raises {describe_exception(error)}",
            hint="generate_vmap_rule needs a new-style Function (forward without ctx, plus setup_context); "
            "a custom vmap staticmethod must return (outputs, out_dims)",
        )
    batched_out = list(batched_out) if isinstance(batched_out, tuple) else [batched_out]
    batched_grads = list(batched_grads) if isinstance(batched_grads, tuple) else [batched_grads]
    tol = sqrt_eps(case.working_dtype)
    worst = 0.0
    for b in range(BATCH):
        outs, grads = per_sample(b)
        err, name = worst_rel_error([o[b] for o in batched_out], outs, [f"output {k}" for k in range(len(outs))])
        if err > tol:
            return Outcome.failed(f"vmapped {name} differs from the per-sample loop at sample {b} (rel err {err:.3g})")
        err_g, name_g = worst_rel_error([g[b] for g in batched_grads], grads, case.diff_names)
        if err_g > tol:
            return Outcome.failed(
                f"vmapped gradient of `{name_g}` differs from the per-sample loop at sample {b} (rel err {err_g:.3g})",
                hint="the vmap rule batches backward wrongly: check out_dims and how saved tensors are batched",
            )
        worst = max(worst, err, err_g)
    return Outcome.passed(f"vmap over {BATCH} samples = per-sample loop, forward and backward (rel err {worst:.1e})")


CHECK = Check.of("vmap", check_vmap)

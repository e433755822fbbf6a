"""`stability`: inputs scaled to large and small magnitude still give finite outputs and gradients.

Scaled: the differentiable arguments drawn with `normal`, `uniform` or `positive` (probabilities,
log-probabilities, masks and constants keep their meaning only unscaled, so they stay as they are),
minus those the spec lists under `checks: {stability: {exclude_args: [...]}}`. The large factor is the
power of ten that lifts the largest |input| past 2·log(max float) of the working dtype — far enough
that a naive exp/softplus/logsumexp overflows, while a square of the scaled inputs still fits. The
small factor is √ε of the dtype.
"""

from __future__ import annotations

import math

import torch

from lossctl.case import Case, differentiable_outputs, engine_rejection
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, require_differentiable_inputs
from lossctl.checks.forward import first_nonfinite
from lossctl.loader import describe_exception
from lossctl.report import Outcome
from lossctl.spec import TensorArg

SCALABLE_INITS = ("normal", "uniform", "positive")
HINT = (
    "use the stable form: logsumexp / log_softmax instead of log(sum(exp)), log1p, "
    "softplus instead of log(1 + exp(x)), clamp before division or sqrt"
)


def scalable_arguments(case: Case) -> list[int]:
    excluded = set(case.spec.check_options.get("stability", {}).get("exclude_args", ()))
    picked = []
    for i in case.diff_indices:
        name = case.names[i]
        arg = case.spec.args.get(name)
        if name in excluded or (isinstance(arg, TensorArg) and arg.init not in SCALABLE_INITS):
            continue
        picked.append(i)
    return picked


def factors(case: Case, picked: list[int]) -> tuple[float, float]:
    dtype = case.working_dtype
    info = torch.finfo(dtype)
    peak = max(float(case.values[i].detach().abs().max()) for i in picked) or 1.0
    large = 10.0 ** math.ceil(math.log10(2 * math.log(info.max) / peak))
    return large, math.sqrt(info.eps)


def check_stability(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    picked = scalable_arguments(case)
    if not picked:
        raise Skip("no argument to scale (probabilities, masks and excluded arguments are left alone)")
    large, small = factors(case, picked)
    names = ", ".join(case.names[i] for i in picked)
    for scale in (large, small):
        label = f"{names} ×{scale:.0e}"
        values = case.fresh()
        for i in picked:
            values[i] = (values[i].detach() * scale).requires_grad_()
        try:
            outputs = case.call(values)
            for k, out in enumerate(outputs):
                if isinstance(out, torch.Tensor) and out.is_floating_point():
                    count, index, value = first_nonfinite(out)
                    if count:
                        return Outcome.failed(
                            f"with {label}: output {k} is {value} at {list(index)} ({count} non-finite)",
                            hint=HINT,
                            data={"scale": scale},
                        )
            diff_out = differentiable_outputs(outputs)
            cotangents = case.random_cotangents(diff_out, "stability")
            grads = torch.autograd.grad(diff_out, [values[i] for i in case.diff_indices], cotangents, allow_unused=True)
        except Exception as error:
            if engine_rejection(case, error):
                raise  # reported once, by the runner
            return Outcome.failed(f"with {label}: raises {describe_exception(error)}", hint=HINT, data={"scale": scale})
        for name, grad in zip(case.diff_names, grads, strict=True):
            if grad is None:
                continue
            count, index, value = first_nonfinite(grad)
            if count:
                return Outcome.failed(
                    f"with {label}: gradient of `{name}` is {value} at {list(index)} ({count} non-finite)",
                    hint=HINT,
                    data={"scale": scale},
                )
    return Outcome.passed(
        f"finite outputs and gradients with {names} ×{large:.0e} and ×{small:.0e} ({dtype_name(case.working_dtype)})",
        data={"large": large, "small": small},
    )


CHECK = Check(
    "stability",
    "inputs scaled to large and small magnitude still give finite outputs and gradients",
    check_stability,
)

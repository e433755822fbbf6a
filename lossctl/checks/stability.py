"""`stability`: inputs scaled to large and small magnitude still give finite outputs and gradients.

Scaled: the differentiable arguments drawn with `normal`, `uniform` or `positive` (probabilities,
log-probabilities, masks and constants keep their meaning only unscaled, so they stay as they are),
minus those the spec lists under `checks: {stability: {exclude_args: [...]}}`. The large factor is the
power of ten that lifts the largest |input| past 2·log(max float) of the working dtype — far enough
that a naive exp/softplus/logsumexp overflows, while a square of the scaled inputs still fits. The
small factor is √ε of the dtype.

Overflow at the large factor is a bug only when the exact result is finite. That is decided from
how the overflowing output (or gradient) grows over scales between 1 and the large factor: growth
by a power of the scale (linear for a log-sum-exp, quadratic for a sum of squares) means the exact
value at the large factor is far inside the dtype's range, so the overflow is the algorithm's
(unstable: fail); exponential growth (an exp-like loss such as Poisson NLL on log-rates) means the
exact value itself overflows (the true value: pass, and say so).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lossctl.case import Case, engine_rejection
from lossctl.catalogue import EXCLUDE_ARGS
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import dtype_name, first_nonfinite, require_differentiable_inputs
from lossctl.loader import describe_exception
from lossctl.report import Outcome
from lossctl.spec import TensorArg

SCALABLE_INITS = ("normal", "uniform", "positive")
HINT = (
    "use the stable form: logsumexp / log_softmax instead of log(sum(exp)), log1p, "
    "softplus instead of log(1 + exp(x)), clamp before division or sqrt"
)
GROWTH_STEPS = 8
"""Scales between 1 and the large factor (geometric) at which growth is measured after an overflow."""
EXPONENTIAL_EXPONENT = 8.0
"""Growth faster than scale^8 between the last two finite scales counts as exponential."""


def scalable_arguments(case: Case) -> list[int]:
    excluded = set(case.spec.check_options.get("stability", {}).get(EXCLUDE_ARGS, ()))
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


def _run_scaled(case: Case, picked: list[int], scale: float) -> dict[str, torch.Tensor]:
    """Every floating output and gradient with the picked inputs times `scale`, by label."""
    values: list[Any] = case.fresh()
    for i in picked:
        values[i] = (values[i].detach() * scale).requires_grad_()
    outputs = case.call(values)
    tensors = {
        f"output {k}": out.detach()
        for k, out in enumerate(outputs)
        if isinstance(out, torch.Tensor) and out.is_floating_point()
    }
    if any(first_nonfinite(t)[0] for t in tensors.values()):
        return tensors  # the gradient of a non-finite output says nothing more
    grads = case.backward(outputs, values, case.random_cotangents(_diff(outputs), "stability"))
    tensors.update({f"gradient of `{n}`": g for n, g in zip(case.diff_names, grads, strict=True) if g is not None})
    return tensors


def _diff(outputs: tuple[Any, ...]) -> list[torch.Tensor]:
    return [o for o in outputs if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad]


def growth(case: Case, picked: list[int], large: float, label: str) -> tuple[float | None, list[tuple[float, float]]]:
    """The power of the scale by which `label`'s largest |value| grows between the last two scales
    (of GROWTH_STEPS between 1 and `large`) where it is still finite, and the (scale, peak) pairs."""
    points: list[tuple[float, float]] = []
    for step in range(GROWTH_STEPS):
        scale = large ** (step / GROWTH_STEPS)
        try:
            tensor = _run_scaled(case, picked, scale).get(label)
        except Exception:
            break
        if tensor is None or first_nonfinite(tensor)[0]:
            break
        points.append((scale, float(tensor.double().abs().max())))
    usable = [(s, m) for s, m in points if m > 0]
    if len(usable) < 2:
        return None, points
    (s_a, m_a), (s_b, m_b) = usable[-2], usable[-1]
    return math.log(m_b / m_a) / math.log(s_b / s_a), points


def check_stability(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    picked = scalable_arguments(case)
    if not picked:
        raise Skip("no argument to scale (probabilities, masks and excluded arguments are left alone)")
    large, small = factors(case, picked)
    names = ", ".join(case.names[i] for i in picked)
    true_overflow: list[str] = []
    for scale in (large, small):
        label = f"{names} ×{scale:.0e}"
        try:
            tensors = _run_scaled(case, picked, scale)
        except Exception as error:
            if engine_rejection(case, error):
                raise  # reported once, by the runner
            return Outcome.failed(f"with {label}: raises {describe_exception(error)}", hint=HINT, data={"scale": scale})
        for what, tensor in tensors.items():
            count, index, value = first_nonfinite(tensor)
            if not count:
                continue
            found = f"with {label}: {what} is {value} at {list(index)} ({count} non-finite)"
            if scale == large:
                exponent, points = growth(case, picked, large, what)
                data = {"scale": scale, "growth_exponent": exponent, "growth": points}
                if exponent is not None and exponent > EXPONENTIAL_EXPONENT:
                    true_overflow.append(f"{what} overflows as its exact value does (grows exponentially)")
                    continue
                if exponent is not None:
                    s_b, m_b = points[-1]
                    found += (
                        f", though it grows only as scale^{exponent:.2g} (|{what.split(' of ')[0]}| ≤ {m_b:.3g} "
                        f"at ×{s_b:.2g}): the exact result is finite, the algorithm overflows"
                    )
                return Outcome.failed(found, hint=HINT, data=data)
            return Outcome.failed(found, hint=HINT, data={"scale": scale})
    kind = dtype_name(case.working_dtype)
    if true_overflow:
        detail = (
            f"with {names} ×{large:.0e} only the exact result overflows ({'; '.join(true_overflow)}); "
            f"finite with ×{small:.0e} ({kind})"
        )
    else:
        detail = (
            f"finite outputs and gradients with {names} ×{large:.0e} and ×{small:.0e} ({kind}); "
            "detects any non-finite element at those scales"
        )
    return Outcome.passed(
        detail,
        data={"large": large, "small": small, "true_overflow": true_overflow},
    )


CHECK = Check.of("stability", check_stability)

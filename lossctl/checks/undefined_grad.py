"""`undefined_grad`: a zero or undefined grad_output (an output the loss does not use) counts as zero.

When a loss uses only some of a Function's outputs (`loss, aux = f(x); loss.backward()`), autograd
calls backward with no gradient for the unused ones: zeros by default, None after
`ctx.set_materialize_grads(False)`. gradcheck's `check_undefined_grad` tests the same contract.
Here each differentiable output in turn gets a zero grad_output (a loss weighted by 0; the
gradients must be finite) and is then left out of `torch.autograd.grad` (the gradients must equal
those with the zero grad_output, and be finite).
"""

from __future__ import annotations

import torch

from lossctl.case import Case
from lossctl.checks.base import Check
from lossctl.checks.common import require_differentiable_inputs, same_random_state, sqrt_eps, worst_rel_error
from lossctl.loader import describe_exception
from lossctl.report import Outcome

HINT = (
    "backward gets None (after ctx.set_materialize_grads(False)) or zeros for an output the loss does not "
    "use: treat None as zero (`if grad_aux is not None: …`) and keep the other outputs' contributions"
)


def check_undefined_grad(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    outputs = case.call(case.fresh())
    positions = case.output_positions(outputs)
    cotangents = case.random_cotangents([outputs[p] for p in positions], "undefined_grad")
    single = len(outputs) == 1
    del outputs  # its graph holds a copy of the inputs and what forward saved: each vjp below builds its own
    worst = 0.0
    for k, position in enumerate(positions):
        label = "the output" if single else f"output {position}"
        zeroed = [torch.zeros_like(c) if j == k else c for j, c in enumerate(cotangents)]
        with same_random_state(case, "undefined_grad"):
            want = case.vjp(case.fresh(), zeroed)[1]  # not its outputs: they hold the input copy
        for name, grad in zip(case.diff_names, want, strict=True):
            if grad is not None and not bool(torch.isfinite(grad).all()):
                return Outcome.failed(
                    f"gradient of `{name}` is not finite when {label}'s grad_output is zero (a loss weighted by 0)",
                    hint="backward divides by grad_output or its norm: 0/0 poisons every parameter upstream",
                    data={"output": position, "argument": name},
                )
        if len(positions) < 2:
            break
        values = case.fresh()
        # Leave output k out of autograd.grad, so the engine hands backward an undefined grad for
        # it, as when the loss does not use it (Case.vjp always passes one per output).
        kept = [out for j, out in enumerate(_differentiable(case, values)) if j != k]
        try:
            with same_random_state(case, "undefined_grad"):
                got = torch.autograd.grad(
                    kept,
                    [values[i] for i in case.diff_indices],
                    [c for j, c in enumerate(cotangents) if j != k],
                    allow_unused=True,
                )
        except Exception as error:
            return Outcome.failed(
                f"backward raises {describe_exception(error)} when {label}'s grad is undefined (the loss does not "
                "use it)",
                hint=HINT,
                data={"output": position},
            )
        for name, grad in zip(case.diff_names, got, strict=True):
            if grad is not None and not bool(torch.isfinite(grad).all()):
                return Outcome.failed(
                    f"gradient of `{name}` is not finite when {label}'s grad is undefined",
                    hint=HINT,
                    data={"output": position, "argument": name},
                )
        err, name = worst_rel_error(list(got), want, case.diff_names)
        if err > sqrt_eps(case.working_dtype):
            if any(g is None for g in got) and not all(w is None for w in want):
                what = "gets no gradient (with a zero grad_output for it, it gets one)"
            else:
                what = f"gets another gradient than with a zero grad_output for it (rel err {err:.3g})"
            return Outcome.failed(
                f"with {label}'s grad undefined, `{name}` {what}",
                hint=HINT,
                data={"output": position, "argument": name, "rel_err": err},
            )
        worst = max(worst, err)
    if len(positions) < 2:
        return Outcome.passed("a zero grad_output gives a finite gradient (one differentiable output)")
    return Outcome.passed(
        f"each of {len(positions)} outputs, its grad zero or undefined (unused), gives finite gradients that "
        f"agree (max rel err {worst:.1e})",
        data={"outputs": len(positions), "max_rel_err": worst},
    )


def _differentiable(case: Case, values: list[object]) -> list[torch.Tensor]:
    outputs = case.call(values)
    return [outputs[p] for p in case.output_positions(outputs)]


CHECK = Check.of("undefined_grad", check_undefined_grad)

"""`compile` (opt-in): forward and backward under torch.compile(backend="aot_eager") equal eager."""

from __future__ import annotations

from typing import Any

import torch

from lossctl.case import Case, differentiable_outputs
from lossctl.checks.base import Check
from lossctl.checks.common import require_differentiable_inputs, sqrt_eps, worst_rel_error
from lossctl.loader import describe_exception
from lossctl.report import Outcome

BACKEND = "aot_eager"
"""Traces with dynamo and AOTAutograd but runs eager kernels: needs no C compiler."""


def check_compile(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    import torch._dynamo as dynamo

    function = case.function()

    def f(*args: Any) -> Any:
        return function(*args)

    values = case.fresh()
    outputs = case.call(values)
    diff_out = differentiable_outputs(outputs)
    cotangents = case.random_cotangents(diff_out, "compile")
    grads = torch.autograd.grad(diff_out, [values[i] for i in case.diff_indices], cotangents, allow_unused=True)

    dynamo.reset()
    try:
        explanation = dynamo.explain(f)(*case.fresh())
        breaks = int(explanation.graph_break_count)
        reasons = [str(getattr(r, "reason", r)).splitlines()[0] for r in explanation.break_reasons][:3]
        compiled = torch.compile(f, backend=BACKEND)
        values_c = case.fresh()
        outputs_c = compiled(*values_c)
        outputs_c = outputs_c if isinstance(outputs_c, tuple | list) else (outputs_c,)
        diff_c = differentiable_outputs(outputs_c)
        grads_c = torch.autograd.grad(diff_c, [values_c[i] for i in case.diff_indices], cotangents, allow_unused=True)
    except Exception as error:
        return Outcome.failed(f"torch.compile({BACKEND}) raises {describe_exception(error)}")
    finally:
        dynamo.reset()
    tol = sqrt_eps(case.working_dtype)
    err_out, name_out = worst_rel_error(diff_c, diff_out, [f"output {k}" for k in range(len(diff_out))])
    err_grad, name_grad = worst_rel_error(list(grads_c), list(grads), case.diff_names)
    data = {"graph_breaks": breaks, "break_reasons": reasons, "rel_err": max(err_out, err_grad)}
    if err_out > tol:
        return Outcome.failed(f"compiled {name_out} differs from eager (rel err {err_out:.3g})", data=data)
    if err_grad > tol:
        return Outcome.failed(
            f"compiled gradient of `{name_grad}` differs from eager (rel err {err_grad:.3g})", data=data
        )
    why = f": {reasons[0]}" if reasons else ""
    return Outcome.passed(
        f"compiled ({BACKEND}) = eager, rel err {max(err_out, err_grad):.1e}; "
        f"{breaks} graph break{'s' * (breaks != 1)}{why}",
        data=data,
    )


CHECK = Check(
    "compile",
    "forward and backward under torch.compile (aot_eager) equal eager; reports graph breaks (opt-in)",
    check_compile,
    default=False,
)

"""`compile` (opt-in): forward and backward under torch.compile(backend="aot_eager") equal eager."""

from __future__ import annotations

from typing import Any

import torch

from lossctl.case import Case
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

    def f(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    diff_out, grads = case.vjp(case.fresh(), "compile")
    cotangents = case.random_cotangents(diff_out, "compile")

    dynamo.reset()
    try:
        explanation = dynamo.explain(f)(*case.fresh(), **case.kwargs)
        breaks = int(explanation.graph_break_count)
        reasons = [str(getattr(r, "reason", r)).splitlines()[0] for r in explanation.break_reasons][:3]
        diff_c, grads_c = case.vjp(case.fresh(), cotangents, fn=torch.compile(f, backend=BACKEND))
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


CHECK = Check.of("compile", check_compile)

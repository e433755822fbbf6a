"""`needs_input_grad`: each argument's gradient is the same when it alone requires grad."""

from __future__ import annotations

import torch

from lossctl.case import Case, is_differentiable
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import in_backward, rel_error, require_differentiable_inputs, sqrt_eps
from lossctl.report import Outcome

HINT = (
    "backward puts gradients in the wrong slots when some ctx.needs_input_grad are False: "
    "check the index each branch tests and the position it returns"
)


def check_needs_input_grad(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    if len(case.diff_indices) < 2:
        raise Skip(f"only one argument requires grad ({case.diff_names[0]})")
    values = case.fresh()
    outputs = case.call(values)
    positions = case.output_positions(outputs)
    cotangents = case.random_cotangents([outputs[p] for p in positions], "needs_input_grad")
    _, reference = case.vjp(case.fresh(), cotangents)
    worst = 0.0
    for name, i, want in zip(case.diff_names, case.diff_indices, reference, strict=True):
        alone = case.fresh()
        for j in case.diff_indices:
            if j != i:
                alone[j].requires_grad_(False)
        outs = case.call(alone)
        pairs = [(outs[p], v) for p, v in zip(positions, cotangents, strict=True) if is_differentiable(outs[p])]
        if not pairs:
            got = None
        else:
            (got,) = case.backward([o for o, _ in pairs], alone, [v for _, v in pairs], inputs=[alone[i]])
        if got is None and want is None:
            continue
        if got is None:
            return Outcome.failed(
                f"no gradient for `{name}` when only `{name}` requires grad", hint=HINT, data={"argument": name}
            )
        if want is None:
            want = torch.zeros_like(got)
        err = rel_error(got, want)
        worst = max(worst, err)
        if err > sqrt_eps(got.dtype):
            return Outcome.failed(
                f"gradient of `{name}` changes when only `{name}` requires grad (rel err {err:.3g})",
                hint=in_backward(case, HINT),
                data={"argument": name, "rel_err": err},
            )
    return Outcome.passed(
        f"each of {', '.join(case.diff_names)} alone gets the same gradient (max rel err {worst:.1e}); "
        f"detects a change ≥ {sqrt_eps(case.working_dtype):.1e} of the gradient's norm",
        data={"max_rel_err": worst},
    )


CHECK = Check.of("needs_input_grad", check_needs_input_grad)

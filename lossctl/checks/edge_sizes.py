"""`edge_sizes`: each named dim set to 1 in turn; the Function still runs and passes gradcheck."""

from __future__ import annotations

from lossctl.case import Case, engine_rejection
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import require_differentiable_inputs, runs_in_float64
from lossctl.checks.gradcheck import check_gradcheck
from lossctl.loader import describe_exception
from lossctl.report import Outcome, Status

HINT = "a .squeeze() that drops a size-1 dim, or shape[0]/shape[1] used for the wrong dim?"


def check_edge_sizes(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    excluded = set(case.spec.check_options.get("edge_sizes", {}).get("exclude_dims", ()))
    dims = [d for d, size in case.point.dims.items() if size > 1 and d not in excluded]
    if not dims:
        reason = "every dim is 1 already" if not excluded else f"the other dims are excluded ({', '.join(excluded)})"
        raise Skip(f"no named dim to shrink to 1: {reason}" if case.point.dims else "the spec names no dims")
    gradcheck = runs_in_float64(case)
    for dim in dims:
        shrunk = {**case.point.dims, dim: 1}
        label = f"with {dim}=1"
        try:
            small = case.with_dims(shrunk)
            values = small.fresh()
            outputs = small.call(values)
            if any(o is not None for o in outputs):
                small.vjp(small.fresh(), lambda outs, s=small: s.random_cotangents(outs, "edge_sizes"))
            result = check_gradcheck(small) if gradcheck else None
        except Skip:
            continue
        except Exception as error:
            if engine_rejection(case, error):
                raise  # reported once, by the runner
            return Outcome.failed(f"{label}: raises {describe_exception(error)}", hint=HINT, data={"dim": dim})
        if result is not None and result.status is Status.FAILED:
            return Outcome.failed(
                f"{label}: {result.detail}", hint=result.hint or HINT, data={"dim": dim, **result.data}
            )
    what = "runs and passes gradcheck" if gradcheck else "runs forward and backward"
    note = f"; left alone: {', '.join(sorted(excluded))}" if excluded else ""
    return Outcome.passed(f"{what} with {', '.join(f'{d}=1' for d in dims)} (each alone){note}")


CHECK = Check(
    "edge_sizes",
    "each named dim set to 1 in turn still runs and passes gradcheck (.squeeze() and dim mix-ups)",
    check_edge_sizes,
)

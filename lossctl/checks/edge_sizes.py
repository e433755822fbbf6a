"""`edge_sizes`: each named dim set to 1 in turn; the Function still runs and passes gradcheck.

A Function that refuses a size with its own `raise` (a window longer than the input) states a
limitation, not a bug: that size is reported as not supported, with the Function's message. A
crash inside torch (a squeeze that dropped the wrong dim), a wrong or a NaN gradient still fail.
"""

from __future__ import annotations

import time
import traceback

from lossctl.case import Case, engine_rejection
from lossctl.catalogue import EXCLUDE_DIMS
from lossctl.checks.base import Check, Skip
from lossctl.checks.common import gradcheck_outcome, nonfinite_text, require_differentiable_inputs
from lossctl.loader import describe_exception, is_user_file
from lossctl.report import Outcome, Status

HINT = "a .squeeze() that drops a size-1 dim, or shape[0]/shape[1] used for the wrong dim?"


def refused_by_user(error: BaseException) -> bool:
    """Whether the user's own code raised this on purpose: the innermost frame is a `raise`
    statement in the user's file (not a torch op failing on a shape)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    return is_user_file(last.filename) and (last.line or "").lstrip().startswith(("raise", "assert"))


def check_edge_sizes(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    excluded = set(case.spec.check_options.get("edge_sizes", {}).get(EXCLUDE_DIMS, ()))
    dims = [d for d, size in case.point.dims.items() if size > 1 and d not in excluded]
    if not dims:
        reason = "every dim is 1 already" if not excluded else f"the other dims are excluded ({', '.join(excluded)})"
        raise Skip(f"no named dim to shrink to 1: {reason}" if case.point.dims else "the spec names no dims")
    gradcheck = case.runs_in_float64()
    checked, refused, fast_mode = [], [], []
    deadline = time.monotonic() + case.allotted_s("edge_sizes")
    for k, dim in enumerate(dims):
        shrunk = {**case.point.dims, dim: 1}
        label = f"with {dim}=1"
        try:
            small = case.with_dims(shrunk)
            outputs = small.forward()
            if any(o is not None for o in outputs):
                _, grads = small.vjp(small.fresh(), "edge_sizes")
                for name, grad in zip(small.diff_names, grads, strict=True):
                    if grad is not None and (bad := nonfinite_text(f"the gradient of `{name}`", grad)):
                        return Outcome.failed(f"{label}: {bad}", hint=HINT, data={"dim": dim})
            result = None
            if gradcheck:
                # slow mode (every Jacobian element) where it fits this size's share of the allotment
                share = (deadline - time.monotonic()) / (len(dims) - k)
                fast = small.use_fast_mode() or small.slow_jacobian_s() > share
                result = gradcheck_outcome(small, "edge_sizes", fast=fast)
            if result is not None and result.data.get("fast_mode"):
                fast_mode.append(f"{dim}=1")
        except Skip:
            continue
        except Exception as error:
            if engine_rejection(case, error):
                raise  # reported once, by the runner
            if refused_by_user(error):
                refused.append(f"{dim}=1 ({describe_exception(error)})")
                continue
            return Outcome.failed(f"{label}: raises {describe_exception(error)}", hint=HINT, data={"dim": dim})
        if result is not None and result.status is Status.FAILED:
            return Outcome.failed(
                f"{label}: {result.detail}", hint=result.hint or HINT, data={"dim": dim, **result.data}
            )
        checked.append(f"{dim}=1")
    data = {"checked": checked, "not_supported": refused, "gradient_verified": gradcheck}
    unsupported = f"not supported (the Function refuses it): {'; '.join(refused)}" if refused else ""
    if not checked:
        raise Skip(unsupported)
    what = "runs and passes gradcheck" if gradcheck else "runs forward and backward"
    note = f"; left alone: {', '.join(sorted(excluded))}" if excluded else ""
    note += f"; {unsupported}" if unsupported else ""
    if gradcheck:
        data["fast_mode"] = fast_mode
        if not fast_mode:
            note += "; gradcheck's slow mode: detects any Jacobian element off by > atol + rtol·|element|"
        else:
            slow = [c for c in checked if c not in fast_mode]
            note += f"; gradcheck in fast mode (one random projection of the Jacobian) at {', '.join(fast_mode)}"
            note += f", slow mode (every element) at {', '.join(slow)}" if slow else ""
    return Outcome.passed(f"{what} with {', '.join(checked)} (each alone){note}", data=data)


CHECK = Check.of("edge_sizes", check_edge_sizes)

"""The case's budget plan (lossctl.budget): the allocation as pure data, the cost models, and a slow
Function whose checks adapt to a small --budget and still give the right verdict."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from lossctl.budget import CostModel, Sizes, cost_model, plan_budget, plan_line
from lossctl.case import Case
from lossctl.catalogue import cost_models
from lossctl.checks.gradient_scaled import method_for
from lossctl.examples.slow import SlowMeanSquaredError
from lossctl.report import CaseResult, CheckResult, Status

GRADCHECK = ("gradcheck", CostModel(100, 12, discrete=True), True)
SCALED = ("gradient_scaled", CostModel(48, 14), True)
BLOCKS = ("gradient_blocks", CostModel(90, 20, grows=0.5), True)
LINEARITY = ("linearity", CostModel(16, 16), False)
LOW = ("low_precision", CostModel(32, 11), True)
DETERMINISM = ("determinism", CostModel(4, 4), False)


def methods(plan):
    return {a.check: (a.method, round(a.passes, 1)) for a in plan.allotments}


def test_everything_nominal_when_it_fits_and_a_grower_takes_a_share_of_the_slack():
    plan = plan_budget([SCALED, BLOCKS, LINEARITY], unit_s=0.01, available_s=10.0, budget_s=12)
    assert methods(plan) == {
        "gradient_scaled": ("nominal", 48),
        "gradient_blocks": ("nominal", 90),
        "linearity": ("nominal", 16),
    }
    nominal_s = (48 + 90 + 16) * 0.01
    assert plan.get("gradient_blocks").seconds == pytest.approx(0.9 + 0.5 * (10.0 - nominal_s))
    assert plan.get("linearity").seconds == pytest.approx(0.16)
    assert plan.skip_reason("linearity") is None


def test_a_tight_budget_shrinks_the_adaptive_checks_by_one_fraction_and_keeps_fixed_ones():
    # minimums 12 + 14 + 16 + 11 = 53 passes, nominal 200: 80 passes available
    plan = plan_budget([GRADCHECK, SCALED, LINEARITY, LOW], unit_s=1.0, available_s=80.0, budget_s=90)
    got = methods(plan)
    assert got["linearity"] == ("nominal", 16)
    assert got["gradcheck"] == ("reduced", 12)  # discrete: its 88 extra passes do not fit, fast mode
    # the 27 passes left lift gradient_scaled (34 to go) and low_precision (21) by the same 27/55
    assert got["gradient_scaled"] == ("reduced", round(14 + 34 * 27 / 55, 1))
    assert got["low_precision"] == ("reduced", round(11 + 21 * 27 / 55, 1))
    assert plan.passes == pytest.approx(80)
    assert plan.get("gradient_scaled").share == pytest.approx(27 / 55)
    assert all(plan.skip_reason(c) is None for c, *_ in (GRADCHECK, SCALED, LINEARITY, LOW))


def test_a_discrete_check_gets_its_full_method_when_that_fits_first():
    plan = plan_budget([GRADCHECK, SCALED], unit_s=1.0, available_s=120.0, budget_s=130)
    assert methods(plan) == {"gradcheck": ("nominal", 100), "gradient_scaled": ("reduced", 20)}


def test_only_when_even_the_minimums_do_not_fit_are_checks_skipped_gradient_checks_first():
    # linearity runs before low_precision but verifies no gradient value: it yields first
    plan = plan_budget([GRADCHECK, SCALED, LINEARITY, LOW, DETERMINISM], unit_s=1.0, available_s=41.0, budget_s=45)
    got = methods(plan)
    assert got["gradcheck"] == ("reduced", 12)
    assert got["gradient_scaled"] == ("reduced", 14)
    assert got["low_precision"] == ("reduced", 11)
    assert got["linearity"] == ("skipped", 0)
    assert got["determinism"] == ("nominal", 4)  # after it, in what linearity leaves: 37 + 4 = 41
    reason = plan.skip_reason("linearity")
    assert reason == (
        "would need ≥ 16× forward+backward ≈ 16 s; the plan gives the 41 s available of the 45 s budget to the "
        "checks before it (gradient checks first); raise --budget"
    )


def test_nothing_fits_a_spent_budget():
    plan = plan_budget([GRADCHECK, LINEARITY], unit_s=0.1, available_s=-3.0, budget_s=5)
    assert {a.method for a in plan.allotments} == {"skipped"}
    assert plan.passes == 0 and "raise --budget" in plan.skip_reason("gradcheck")


def test_gradcheck_is_priced_by_its_full_jacobian_where_slow_mode_would_run():
    small = cost_model("gradcheck", 12, 12, 0.0, Sizes(inputs=100, outputs=1))
    assert (small.nominal, small.minimum, small.discrete) == (203, 12, True)
    large = cost_model("gradcheck", 12, 12, 0.0, Sizes(inputs=10**6, outputs=1))
    assert (large.nominal, large.minimum, large.adapts) == (12, 12, False)
    edges = cost_model("edge_sizes", 12, None, 0.25, Sizes(inputs=1000, outputs=1, shrunk_inputs=(10, 100)))
    assert edges.nominal == edges.minimum == 2 * (3 + 12) and edges.grows == 0.25  # slow mode from its slack
    assert cost_model("forward", None, None, 0.0, Sizes(1, 1)) is None
    ids = [c for c, *_ in cost_models(["forward", "gradcheck", "gradient_blocks", "stability"], Sizes(10**6, 1))]
    assert ids == ["gradcheck", "gradient_blocks", "stability"]


def test_gradient_scaled_fits_its_directions_and_elements_to_its_passes():
    assert method_for(None) == method_for(48) == (3, 8, 8)
    assert method_for(14) == (2, 2, 1)  # ĝ and 2 random directions, 3 exact elements
    directions, top, rand = method_for(25)  # 12 measurements after the float64 vjp
    assert (directions, top, rand) == (2, 5, 4)


def test_the_verbose_plan_line_is_rebuilt_from_the_checks_data():
    def row(check, planned):
        return CheckResult(check=check, status=Status.PASSED, detail="", duration_ms=1.0, data={"planned": planned})

    case = CaseResult(
        case="c",
        spec="c",
        function="f",
        source=None,
        dims={},
        seed=0,
        device="cpu",
        checks=(
            CheckResult(check="forward", status=Status.PASSED, detail="", duration_ms=1.0),
            row("gradcheck", {"passes": 12, "seconds": 2.4, "method": "nominal"}),
            row("gradient_scaled", {"passes": 20.5, "seconds": 4.1, "method": "reduced"}),
            row("linearity", {"passes": 0, "seconds": 0, "method": "skipped"}),
        ),
    )
    assert plan_line(case) == "c: plan: gradcheck 12×, gradient_scaled 20× (reduced), linearity skipped = 32× ≈ 6.5 s"


# --------------------------------------------------------------------------- a slow Function

SLOW = (
    "function: lossctl.examples.slow.{fn}\ndims: {{N: 20, C: 3}}\n"
    "args: {{input: {{shape: [N, C]}}, target: {{shape: [N, C], requires_grad: false}}}}\n"
)
FEW = "gradcheck,gradient_scaled,low_precision,linearity,determinism"


@pytest.fixture
def slow_forward(monkeypatch):
    import lossctl.examples.slow as slow

    monkeypatch.setattr(slow, "FORWARD_SECONDS", 0.02)


def test_a_slow_function_adapts_to_a_small_budget_and_still_catches_the_bug(run_cli, tmp_path, slow_forward):
    rows = {}
    for fn in ("SlowMeanSquaredError", "SlowMSEMissingMean"):
        spec = tmp_path / f"{fn}.yaml"
        spec.write_text(SLOW.format(fn=fn))
        out = tmp_path / f"{fn}.json"
        result = run_cli("check", str(spec), "--checks", FEW, "--budget", "1.6", "-v", "-f", "json", "-o", str(out))
        (case,) = json.loads(out.read_text())["cases"]
        rows[fn] = (result, {r["check"]: r for r in case["checks"]}, case["resources"])
    result, checks, resources = rows["SlowMeanSquaredError"]
    assert result.exit_code == 0, result.output
    # 60 elements: gradcheck's full Jacobian (123 passes ≈ 2.5 s) does not fit 1.6 s: fast mode instead
    assert checks["gradcheck"]["status"] == "passed"
    assert checks["gradcheck"]["data"]["planned"]["method"] == "reduced"
    assert "fast mode" in checks["gradcheck"]["detail"] and "diluted to ~√(k/60)" in checks["gradcheck"]["detail"]
    assert "(reduced to fit the budget plan); detects ≥ 1e-03·‖∇‖" in checks["gradient_scaled"]["detail"]
    low = checks["low_precision"]
    assert low["status"] == "passed" and "skipped bfloat16, float32: the budget plan gives this check" in low["detail"]
    assert "detects a non-linearity ≥ 1.5e-08" in checks["linearity"]["detail"]
    assert all(r["status"] != "skipped" for r in checks.values()), checks
    assert resources["planned_s"] <= 1.6 and resources["checks_s"] < 3.2
    assert re.search(
        r"SlowMeanSquaredError: plan: gradcheck 12× \(reduced\), gradient_scaled \d+× \(reduced\), linearity 16×, "
        r"determinism 4×, low_precision \d+× \(reduced\) = \d+× ≈ 1.\d s",
        " ".join(result.output.split()),
    )

    result, checks, _ = rows["SlowMSEMissingMean"]
    assert result.exit_code == 1, result.output
    assert checks["gradcheck"]["status"] == "failed", checks["gradcheck"]["detail"]
    # gradcheck's failure diagnosis may spend the rest of a budget this small (at least 5 s): the
    # checks after it then skip saying so instead of overrunning the budget further
    scaled = checks["gradient_scaled"]
    assert scaled["status"] == "failed" or (
        scaled["status"] == "skipped" and "the checks before it took longer than the plan gave them" in scaled["detail"]
    ), scaled["detail"]


# --------------------------------------------------------------------------- float32-only Functions


class Float32OnlyVariance(Function):
    """A kernel-style variance that refuses float64 and computes in its input's dtype (two-pass)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            raise TypeError("kernel supports float32, float16 and bfloat16 only")
        centred = x - x.mean()
        ctx.save_for_backward(centred)
        return centred.square().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (centred,) = ctx.saved_tensors
        return grad * 2 * centred / centred.numel()


class Float32OnlyNaiveVariance(Float32OnlyVariance):
    """The same kernel computing E[x²] − E[x]² in its input's dtype: x² overflows float16."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            raise TypeError("kernel supports float32, float16 and bfloat16 only")
        ctx.save_for_backward(x - x.mean())
        return x.square().mean() - x.mean().square()


class AssertFloat32Variance(Float32OnlyVariance):
    """A Triton-style wrapper: `assert x.dtype == torch.float32`, so float16 and bfloat16 are refused
    with an AssertionError too (low_precision must say so, not raise)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32, f"kernel is float32-only, got {x.dtype}"
        centred = x - x.mean()
        ctx.save_for_backward(centred)
        return centred.square().mean()


@pytest.mark.parametrize(
    ("function", "mean", "status"),
    [
        ("lossctl.examples.scale.Float32OnlyCrossEntropy", None, Status.PASSED),
        ("tests.test_budget_plan.AssertFloat32Variance", 0.0, Status.SKIPPED),
        ("tests.test_budget_plan.Float32OnlyVariance", 300.0, Status.PASSED),
        ("tests.test_budget_plan.Float32OnlyNaiveVariance", 300.0, Status.FAILED),
    ],
)
def test_low_precision_compares_a_float32_only_function_with_its_own_float32_run(function, mean, status):
    from lossctl.runner import RunOptions, run_checks
    from lossctl.spec import load_specs
    from lossctl.suite import Job

    if mean is None:
        args = (
            "dims: {N: 64, V: 50}\n"
            "args: {logits: {shape: [N, V], dtype: float32}, target: {shape: [N], dtype: int64, high: V}}"
        )
    else:
        args = f"args: {{x: {{shape: [256], dtype: float32, mean: {mean}}}}}"
    (spec,) = load_specs(f"function: {function}\n{args}\n", source="t.yaml")
    (case,) = run_checks([Job(spec)], RunOptions(device="cpu", checks=("low_precision",))).cases
    (row,) = [r for r in case.checks if r.check == "low_precision"]
    assert row.status is status, row.detail
    if status is Status.SKIPPED:
        assert "the Function refuses it (AssertionError: kernel is float32-only" in row.detail, row.detail
    elif status is Status.PASSED:
        assert "against its own float32 run (cannot run in float64)" in row.detail
        assert row.detail.startswith("float16 ") and "bfloat16 " in row.detail
        assert row.data["reference"] == "float32" and row.data["gradient_verified"] is False
    else:
        assert row.detail.startswith("float16: out is not finite") and "against its own float32 run" in row.detail


def test_edge_sizes_runs_slow_mode_at_each_size_where_it_fits_its_share(slow_forward, tmp_path):
    from lossctl.runner import RunOptions, run_checks
    from lossctl.spec import load_specs
    from lossctl.suite import Job

    (spec,) = load_specs(SLOW.format(fn="SlowMeanSquaredError"), source="t.yaml")
    (case,) = run_checks([Job(spec)], RunOptions(device="cpu", checks=("edge_sizes",), budget=1.6)).cases
    (row,) = [r for r in case.checks if r.check == "edge_sizes"]
    # N=1 leaves 3 elements (9 passes ≈ 0.2 s: fits), C=1 leaves 20 (43 passes ≈ 0.9 s: does not)
    assert row.status is Status.PASSED, row.detail
    assert row.data["fast_mode"] == ["C=1"]
    assert (
        "gradcheck in fast mode (one random projection of the Jacobian) at C=1, slow mode (every element) at N=1"
        in (row.detail)
    )


class Slow64MSE(Function):
    """A correct MSE whose float64 path is 10× slower than its float32 one (a GPU's float64 units,
    a float32-tuned kernel): the checks that run in float64 must be priced in float64 passes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02 if x.dtype == torch.float64 else 0.002)
        d = x - t
        ctx.save_for_backward(d)
        return d.square().mean()

    @staticmethod
    @once_differentiable  # `d` was computed in forward, off the graph: double backward must refuse
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (d,) = ctx.saved_tensors
        grad = g * 2 * d / d.numel()
        return grad, -grad


def test_the_plan_prices_float64_checks_in_float64_passes_and_keeps_the_budget(run_cli, tmp_path):
    spec = tmp_path / "slow64.yaml"
    spec.write_text(
        "function: tests.test_budget_plan.Slow64MSE\ndims: {N: 3000}\n"
        "args: {x: {shape: [N], dtype: float32}, t: {shape: [N], dtype: float32, requires_grad: false}}\n"
    )
    out = tmp_path / "r.json"
    result = run_cli("check", str(spec), "-j", "0", "--budget", "4", "-f", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    (case,) = json.loads(out.read_text())["cases"]
    resources = case["resources"]
    assert resources["forward_backward_s"] < 0.015  # the float32 pass
    planned = next(c for c in case["checks"] if c["check"] == "gradcheck")["data"]["planned"]
    assert planned["seconds"] / planned["passes"] >= 0.02  # the unit: a float64 pass
    assert resources["planned_s"] <= 4


class SlowMSELastRowZero(SlowMeanSquaredError):
    """The slow MSE whose backward leaves the last row's gradient at zero."""

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad = g * 2 * diff / diff.numel()
        grad[-1] = 0
        return grad, -grad


def test_a_slow_small_case_gets_gradient_blocks_too(run_cli, tmp_path, slow_forward):
    """At 60 elements a 20 ms forward already puts gradcheck's full Jacobian (123 passes) out of a
    1.6 s budget: gradient_blocks joins as on a large case (here the only gradient check left:
    gradcheck's own failure diagnosis would spend the small budget first), and names the row."""
    spec = tmp_path / "rowzero.yaml"
    spec.write_text(SLOW.replace("lossctl.examples.slow.{fn}", "tests.test_budget_plan.SlowMSELastRowZero").format())
    out = tmp_path / "r.json"
    from lossctl.catalogue import CATALOGUE

    skip = ",".join(c.id for c in CATALOGUE if c.default and c.id not in ("forward", "backward"))
    result = run_cli("check", str(spec), "--skip", skip, "--budget", "1.6", "-f", "json", "-o", str(out))
    assert result.exit_code == 1, result.output
    (case,) = json.loads(out.read_text())["cases"]
    blocks = next(c for c in case["checks"] if c["check"] == "gradient_blocks")
    assert blocks["status"] == "failed" and "row 19 of N=20 (the last one)" in blocks["detail"], blocks["detail"]


class OffGraphMSE(Function):
    """First-order right; backward uses `d` saved from forward (off the graph) with no
    @once_differentiable, so double backward silently drops the 2/n second-order term."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = x - t
        ctx.save_for_backward(d)
        return d.square().mean()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (d,) = ctx.saved_tensors
        grad = g * 2 * d / d.numel()
        return grad, -grad


class DifferentiableMSE(OffGraphMSE):
    """The same, with backward recomputing `x − t` from the saved inputs: double backward is right."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, t)
        return (x - t).square().mean()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = ctx.saved_tensors
        grad = g * 2 * (x - t) / x.numel()
        return grad, -grad


@pytest.mark.parametrize(("function", "status"), [("OffGraphMSE", Status.FAILED), ("DifferentiableMSE", Status.PASSED)])
def test_double_backward_at_scale_also_checks_every_element_at_a_toy_size(function, status):
    """At 20,000 elements gradgradcheck's one random projection dilutes a dropped 2/n term far below
    its atol (fast mode passes OffGraphMSE); the same Function shrunk to N=4, C=4 is checked element
    by element, and the bug, which does not depend on the size, shows there."""
    from lossctl.runner import RunOptions, run_checks
    from lossctl.spec import load_specs
    from lossctl.suite import Job

    (spec,) = load_specs(
        f"function: tests.test_budget_plan.{function}\ndims: {{N: 2000, C: 10}}\n"
        "args: {x: {shape: [N, C]}, t: {shape: [N, C], requires_grad: false}}\n",
        source="t.yaml",
    )
    (case,) = run_checks([Job(spec)], RunOptions(device="cpu", checks=("double_backward",))).cases
    (row,) = [r for r in case.checks if r.check == "double_backward"]
    assert row.status is status, row.detail
    if status is Status.FAILED:
        assert (
            "second derivatives are wrong" in row.detail and "at N=4,C=4; fast mode passed at full size" in row.detail
        )
    else:
        assert (
            "fast mode" in row.detail and "and every element (slow mode) with the case shrunk to N=4,C=4" in row.detail
        )


@pytest.mark.parametrize(("function", "status"), [("OffGraphMSE", Status.FAILED), ("DifferentiableMSE", Status.PASSED)])
def test_double_backward_under_its_fast_mode_price_checks_the_toy_size_alone(function, status):
    """When the plan gives double_backward less than gradgradcheck's fast mode on the full case
    costs (a large, slow case), the whole check runs on the case shrunk to a toy size, and says
    what that leaves out."""
    from lossctl.checks.double_backward import _shrunk_only
    from lossctl.loader import load_object
    from lossctl.spec import load_specs, sweep
    from lossctl.target import classify

    ref = f"tests.test_budget_plan.{function}"
    (spec,) = load_specs(
        f"function: {ref}\ndims: {{N: 2000, C: 10}}\nargs: {{x: {{shape: [N, C]}}, t: {{shape: [N, C]}}}}\n",
        source="t.yaml",
    )
    target = classify(load_object(ref)[0], ref)
    case = Case.build("c", spec, sweep(spec)[0], target, torch.device("cpu"), 0)
    outcome = _shrunk_only(case, time.monotonic() + 30, passes=3, nominal=12)
    assert outcome.status is status, outcome.detail
    if status is Status.FAILED:
        assert "second derivatives are wrong" in outcome.detail and "at N=4,C=4" in outcome.detail
    else:
        assert outcome.detail.startswith("second derivatives match gradgradcheck in slow mode (every element)")
        assert "the full case's fast mode (12× forward+backward) did not fit the budget plan's 3×" in outcome.detail

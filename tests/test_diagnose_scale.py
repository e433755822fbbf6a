"""A failing gradient's diagnosis at scale (lossctl.diagnose_scale): when an element-by-element
comparison does not fit the case's budget, the wrong slice is bisected and named, and gradcheck's
own slow-mode message (one forward per element) is left out. Sizes are small here; the budget is
made tiny instead, so the scale path runs in a test's time."""

from __future__ import annotations

import pytest

import lossctl.checks.common as common
from lossctl.report import Status
from lossctl.runner import RunOptions, run_checks
from lossctl.spec import load_specs
from lossctl.suite import Job

MSE = "dims: {{N: {n}, C: 10}}\nargs: {{input: {{shape: [N, C]}}, target: {{shape: [N, C], requires_grad: false}}}}\n"


def run(function: str, n: int, checks: tuple[str, ...], budget: float | None = None):
    text = f"function: lossctl.examples.scale.{function}\n" + MSE.format(n=n)
    (spec,) = load_specs(text, source="t.yaml")
    report = run_checks([Job(spec)], RunOptions(device="cpu", checks=checks, budget=budget))
    return {r.check: r for r in report.cases[0].checks}


@pytest.fixture
def tiny_budget(monkeypatch):
    """A diagnosis that may spend 0.2 s: the element-by-element path no longer fits at N=3000."""
    monkeypatch.setattr(common, "DIAGNOSE_MIN_SECONDS", 0.2)
    return 0.5


def test_a_global_factor_is_bisected_to_the_whole_gradient_and_named(tiny_budget):
    result = run("MSEMissingMean", 3000, ("gradcheck",), budget=tiny_budget)["gradcheck"]
    assert result.status is Status.FAILED
    assert "`input`: every row of N=3000: 3e+04× the numerical (bisected)" in result.detail
    assert "missing 1/(N·C) (N·C=30000)" in result.hint
    (mismatch,) = result.data["mismatches"]
    assert mismatch["localized"].startswith("every row of N=3000")
    assert mismatch["checked_elements"] < 300 < mismatch["total_elements"]
    # torch's fast-mode failure rebuilds the whole Jacobian for its message: left out at this budget
    assert "not rebuilt for this message" in result.data["gradcheck_message"]


def test_a_wrong_column_is_localized_with_its_sign(tiny_budget):
    result = run("MSEFirstColumnSignFlipped", 3000, ("gradient_scaled",), budget=tiny_budget)["gradient_scaled"]
    assert result.status is Status.FAILED
    assert "`input`: column 0 of C=10 (the first one): -1× the numerical (bisected)" in result.detail
    assert result.hint.startswith("sign is flipped; right elsewhere")


def test_ignoring_grad_output_is_recognised_at_scale(tiny_budget):
    result = run("MSEIgnoresGradOutput", 3000, ("gradient_scaled",), budget=tiny_budget)["gradient_scaled"]
    assert result.status is Status.FAILED
    assert "(bisected)" in result.detail
    assert result.hint.startswith("backward ignores grad_output (the gradient is 1/grad_output")


def test_a_small_case_keeps_the_element_by_element_diagnosis():
    result = run("MSEMissingMean", 50, ("gradcheck",))["gradcheck"]
    assert result.status is Status.FAILED
    assert "bisected" not in result.detail
    assert "`input`: 500/500 elements wrong" in result.detail
    assert "not rebuilt" not in result.data["gradcheck_message"]


def test_the_last_partial_chunk_is_named_in_rows(tiny_budget):
    text = (
        "function: lossctl.examples.scale.ChunkedCrossEntropyLastChunkOwnMean\n"
        "dims: {N: 300, V: 20}\n"
        "args: {logits: {shape: [N, V]}, target: {shape: [N], dtype: int64, high: V}, chunk: 64}\n"
    )
    (spec,) = load_specs(text, source="t.yaml")
    report = run_checks([Job(spec)], RunOptions(device="cpu", checks=("gradcheck",), budget=tiny_budget))
    (result,) = report.cases[0].checks
    assert result.status is Status.FAILED
    # the last chunk (rows 256–299) averaged over its own 44 rows instead of N=300: 300/44 = 6.818×
    assert "`logits`: rows 256–299 of N=300 (the last 44 rows): 6.818× the numerical (bisected)" in result.detail
    assert "right elsewhere: a boundary, a partial last chunk" in result.hint

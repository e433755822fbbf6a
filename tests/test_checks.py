"""The checks: correct Functions pass every one; each broken one fails the intended check with the
intended message, and only that check where the bug is invisible to the others."""

from __future__ import annotations

import pytest

from lossctl.report import SETUP, Status

P, F, E, S = Status.PASSED, Status.FAILED, Status.ERROR, Status.SKIPPED
CORE = ("forward", "backward", "raw_backward", "gradcheck", "gradient_scaled", "linearity")
FOUR = ("forward", "backward", "gradcheck", "linearity")


def statuses(results, checks=FOUR):
    return {check: results[check].status for check in checks}


def problems(results):
    return {k: r.detail for k, r in results.items() if r.status.is_problem}


@pytest.mark.parametrize(
    ("reference", "spec"),
    [
        ("tests.fns.Square", None),
        ("tests.fns.ScaledSum", "args: {x: {shape: [3, 4]}, w: {shape: [3, 4]}, scale: 0.5}"),
        ("tests.fns.NewStyleMul", None),
        ("tests.fns.MinMax", "dims: {N: 4, C: 6}\nargs: {x: {shape: [N, C]}}"),
        ("tests.fns.SquareModule", "module_kwargs: {scale: 3.0}\nargs: {x: {shape: [4, 2]}}"),
        ("tests.fns.square_loss", None),
        ("lossctl.examples.seed.CustomLossFunction", None),
        (
            "lossctl.examples.focal.FocalLoss",
            "dims: {N: 7, C: 4}\nargs: {logits: {shape: [N, C]}, "
            "target: {shape: [N], dtype: int64, high: C}, gamma: 1.5}",
        ),
        (
            "lossctl.examples.cross_entropy.CrossEntropyLoss",
            "dims: {N: 9, C: 3}\nargs: {logits: {shape: [N, C], dtype: float32}, "
            "target: {shape: [N], dtype: int64, high: C}}",
        ),
    ],
)
def test_correct_functions_pass_every_check(check_function, reference, spec):
    results = check_function(reference, spec)
    assert not problems(results)
    function_only = reference.rsplit(".", 1)[-1] in ("SquareModule", "square_loss")
    expected = {c: S if c == "raw_backward" and function_only else P for c in CORE}
    assert {c: results[c].status for c in CORE} == expected, {k: r.detail for k, r in results.items()}


def test_float32_inputs_are_promoted_for_gradcheck(check_function):
    results = check_function(
        "lossctl.examples.cross_entropy.CrossEntropyLoss",
        "args: {logits: {shape: [4, 3], dtype: float32}, target: {shape: [4], dtype: int64, high: 3}}",
    )
    assert "logits promoted to float64" in results["gradcheck"].detail
    assert results["backward"].status is P


def test_clamped_grad_output_fails_linearity_only(check_function):
    results = check_function("tests.fns.ClampedUpstream")
    assert statuses(results) == {"forward": P, "backward": P, "gradcheck": P, "linearity": F}
    detail = results["linearity"].detail
    assert "not homogeneous" in detail and "`x`" in detail
    assert "clips, normalizes" in results["linearity"].hint


def test_normalized_grad_output_fails_linearity(check_function):
    results = check_function("tests.fns.NormalizedUpstream")
    assert results["gradcheck"].status is P
    assert results["linearity"].status is F


@pytest.mark.parametrize(
    ("reference", "hint"),
    [
        ("tests.fns.DoubledGrad", "gradient is 2.000× too large"),
        ("tests.fns.MissingMean", "gradient is 15.000× too large — missing 1/(N·C) (N·C=15)?"),
        ("tests.fns.FlippedSign", "sign is flipped"),
        ("tests.fns.ZeroGrad", "backward returns zeros"),
    ],
)
def test_wrong_gradients_fail_gradcheck_with_a_diagnosis(check_function, reference, hint):
    results = check_function(reference)
    gradcheck = results["gradcheck"]
    assert gradcheck.status is F
    assert gradcheck.hint.startswith(hint)
    # The detail names the argument, the worst element with expected and got, and the error.
    assert "`x`: 15/15 elements wrong; worst [" in gradcheck.detail
    assert "expected" in gradcheck.detail and "got" in gradcheck.detail and "rel err" in gradcheck.detail
    (mismatch,) = gradcheck.data["mismatches"]
    assert mismatch["argument"] == "x" and len(mismatch["worst"]) == 3
    assert results["forward"].status is P and results["backward"].status is P


def test_worst_element_is_the_true_worst(check_function):
    results = check_function("tests.fns.DoubledGrad", "args: {x: {shape: [2, 3]}}")
    (mismatch,) = results["gradcheck"].data["mismatches"]
    worst = mismatch["worst"][0]
    errors = [abs(w["got"] - w["expected"]) for w in mismatch["worst"]]
    assert errors == sorted(errors, reverse=True)
    assert worst["got"] == pytest.approx(2 * worst["expected"], rel=1e-6)


def test_none_gradient_fails_backward_naming_the_argument(check_function):
    results = check_function("tests.fns.NoneGrad")
    assert results["backward"].status is F
    assert "no gradient for `x`" in results["backward"].detail


def test_too_many_gradients(check_function):
    results = check_function("tests.fns.TooManyGrads")
    assert results["backward"].status is F
    assert "backward returned 2 gradients, forward takes 1 inputs (x)" in results["backward"].detail


def test_wrong_gradient_shape(check_function):
    results = check_function("tests.fns.WrongShapeGrad")
    assert results["backward"].status is F
    assert "gradient for `x` (argument 0) is invalid: got [3] but expected shape compatible with [5, 3]" in (
        results["backward"].detail
    )


def test_nan_gradient(check_function):
    results = check_function("tests.fns.NaNGrad")
    assert results["backward"].status is F
    assert "gradient of `x` has 15 non-finite values" in results["backward"].detail


def test_user_exception_in_backward_is_error_with_traceback(check_function):
    results = check_function("tests.fns.RaisesInBackward")
    assert results["forward"].status is P
    backward = results["backward"]
    assert backward.status is E
    assert "ValueError: backward exploded on purpose (at fns.py:" in backward.detail
    assert "in backward" in backward.detail
    assert 'fns.py", line' in backward.traceback and "lossctl/runner.py" not in backward.traceback


def test_forward_that_raises_skips_the_rest(check_function):
    results = check_function("tests.fns.RaisesInForward")
    assert results["forward"].status is E
    assert "KeyError" in results["forward"].detail and results["forward"].traceback
    assert {results[c].status for c in ("backward", "gradcheck", "linearity")} == {S}


def test_non_finite_forward(check_function):
    results = check_function("tests.fns.LogOfNegative")
    assert results["forward"].status is F
    assert "output 0 has" in results["forward"].detail and "non-finite" in results["forward"].detail


def test_non_tensor_output(check_function):
    results = check_function("tests.fns.ReturnsFloat")
    assert results["forward"].status is F
    assert "output 1 is a float, not a tensor" in results["forward"].detail


def test_detached_output_fails_backward(check_function):
    results = check_function("tests.fns.Detached")
    assert results["backward"].status is F
    assert "no output requires grad although x do" in results["backward"].detail


def test_float32_only_kernel_skips_gradcheck(check_function):
    results = check_function("tests.fns.Float32Only", "args: {x: {shape: [3], dtype: float32}}")
    assert results["forward"].status is P and results["backward"].status is P
    assert results["gradcheck"].status is S
    assert "cannot run in float64 (TypeError: kernel supports float32 only" in results["gradcheck"].detail
    assert results["linearity"].status is P  # falls back to float32
    # ... and the run never says OK without a verified gradient value
    assert results["verified"].status is F
    assert "no gradient value was verified: gradcheck, gradient_scaled" in results["verified"].detail
    assert "--allow-unverified-gradients" in results["verified"].hint
    # edge_sizes running forward and backward at size 1 (no float64, no gradcheck) verifies no value
    with_dims = check_function("tests.fns.Float32Only", "dims: {N: 3}\nargs: {x: {shape: [N], dtype: float32}}")
    assert with_dims["edge_sizes"].status is P and with_dims["verified"].status is F


def test_no_input_requiring_grad_skips_gradient_checks(check_function):
    results = check_function("tests.fns.Square", "args: {x: {shape: [3], requires_grad: false}}")
    assert results["forward"].status is P
    assert {results[c].status for c in ("backward", "gradcheck", "linearity")} == {S}
    assert "no input requires grad" in results["backward"].detail


def test_module_constructor_failure_is_a_setup_error(check_function):
    results = check_function("tests.fns.BadConstructor", "module_kwargs: {size: 3}\nargs: {x: {shape: [2]}}")
    assert list(results) == [SETUP]
    assert results[SETUP].status is E
    assert "cannot build with size=3" in results[SETUP].detail


def test_checks_can_be_selected(check_function):
    results = check_function("tests.fns.Square", checks=("gradcheck",))
    assert list(results) == ["gradcheck"]


def test_every_check_reports_a_time(check_function):
    results = check_function("tests.fns.Square")
    assert all(r.duration_ms > 0 for r in results.values())


def test_large_inputs_use_fast_mode_and_sampled_diagnosis(check_function):
    results = check_function("tests.fns.MissingMean", "args: {x: {shape: [60, 50]}}")
    gradcheck = results["gradcheck"]
    assert gradcheck.status is F
    assert "fast mode" in gradcheck.explain
    assert "2000/2000 elements wrong (of 3000, sampled)" in gradcheck.detail
    assert gradcheck.hint.startswith("gradient is 3000.000× too large")


def test_checks_are_reproducible(check_function):
    first = check_function("tests.fns.DoubledGrad", "args: {x: {shape: [60, 50]}}")
    second = check_function("tests.fns.DoubledGrad", "args: {x: {shape: [60, 50]}}")
    assert first["gradcheck"].status is second["gradcheck"].status
    assert first["linearity"].detail == second["linearity"].detail


def test_registry_matches_the_spec_ids():
    from lossctl.checks import registry
    from lossctl.spec import CHECK_IDS

    checks = registry()
    assert tuple(c.id for c in checks) == CHECK_IDS
    assert all(c.description for c in checks)
    assert [c.id for c in checks if not c.default] == ["gradient_blocks", "compile", "compile_agreement"]


def test_spec_can_turn_checks_on_and_off(check_function):
    results = check_function(
        "tests.fns.Square", "checks: {compile: false, vmap: false, linearity: false}\nargs: {x: {shape: [3]}}"
    )
    assert "linearity" not in results and "vmap" not in results and "gradcheck" in results
    results = check_function(
        "tests.fns.Square", "checks: {compile: true}\nargs: {x: {shape: [3]}}", checks=("forward",)
    )
    assert list(results) == ["forward"]  # --checks wins over the spec


def test_low_precision_catches_catastrophic_cancellation(check_function):
    results = check_function(
        "tests.fns.NaiveVariance", "args: {x: {shape: [100], mean: 1000.0}}", checks=("low_precision",)
    )
    assert results["low_precision"].status is F
    assert "float32: out rel err" in results["low_precision"].detail


@pytest.mark.parametrize("seed", range(8))
def test_low_precision_forgives_ill_conditioned_sums(check_function, seed):
    # A dot product whose terms nearly cancel loses precision in float32 whatever the
    # implementation: the conditioning estimate must absorb it (no false alarm).
    spec = f"seed: {seed}\nargs: {{x: {{shape: [6]}}, w: {{shape: [6]}}}}"
    results = check_function("tests.fns.DotProduct", spec, checks=("low_precision",))
    assert results["low_precision"].status is P, results["low_precision"].detail

"""The `reference` check: a Function against its plain-PyTorch twin in float32 and bfloat16."""

from __future__ import annotations

import pytest

from lossctl.report import Status

CE_ARGS = "dims: {N: 64, C: 10}\nargs: {logits: {shape: [N, C]}, target: {shape: [N], dtype: int64, high: C}}\n"


def spec(reference: str, dtypes: str = "[float32, bfloat16]", args: str = CE_ARGS) -> str:
    return f"reference: {reference}\ndtypes: {dtypes}\n{args}"


@pytest.mark.parametrize(
    ("function", "reference", "args"),
    [
        ("lossctl.examples.cross_entropy.CrossEntropyLoss", "torch.nn.functional.cross_entropy", CE_ARGS),
        (
            "lossctl.examples.focal.FocalLoss",
            "lossctl.examples.focal.focal_loss_reference",
            CE_ARGS.replace("}}\n", "}, gamma: 2.0}\n"),
        ),
    ],
)
def test_correct_function_matches_its_twin_in_float32_and_bfloat16(check_function, function, reference, args):
    results = check_function(function, spec(reference, args=args), checks=("reference",))
    result = results["reference"]
    assert result.status is Status.PASSED, result.detail
    assert "float32" in result.detail and "bfloat16" in result.detail
    for dtype in ("float32", "bfloat16"):
        for numbers in result.data[dtype].values():
            assert numbers["fn_err"] <= numbers["allowed"]
            assert numbers["ref_err"] > 0


@pytest.mark.parametrize(
    ("function", "dtypes", "label"),
    [
        ("tests.fns.CrossEntropyIgnoresUpstream", "[float32, bfloat16]", "float32: ∂logits"),
        ("tests.fns.CrossEntropyOnePercentOff", "[float32]", "float32: ∂logits"),
    ],
)
def test_wrong_gradients_fail_with_the_ratio(check_function, function, dtypes, label):
    results = check_function(function, spec("torch.nn.functional.cross_entropy", dtypes), checks=("reference",))
    result = results["reference"]
    assert result.status is Status.FAILED
    assert result.detail.startswith(label)
    assert "vs the reference's" in result.detail and "×, allowed" in result.detail
    ratio = result.data["float32"]["∂logits"]["ratio"]
    assert ratio > 2
    if "OnePercent" in function:
        # 1% off: ~1e-2 against float32 rounding of ~1e-7: five orders of magnitude.
        assert 1e-3 < result.data["float32"]["∂logits"]["fn_err"] < 2e-2


def test_float16_overflow_fails(check_function):
    args = "dims: {N: 256, C: 300}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}}\n"
    results = check_function(
        "tests.fns.SumThenDivideMSE", spec("torch.nn.functional.mse_loss", "[float16]", args), checks=("reference",)
    )
    result = results["reference"]
    assert result.status is Status.FAILED
    assert "float16: out is not finite in float16 (the reference's is) — overflow" in result.detail


def test_grad_output_is_random_never_all_ones(check_function):
    # CrossEntropyIgnoresUpstream is exact when grad_output is 1: it fails only because the check
    # feeds a random grad_output.
    results = check_function(
        "tests.fns.CrossEntropyIgnoresUpstream",
        spec("torch.nn.functional.cross_entropy", "[float32]"),
        checks=("reference",),
    )
    assert results["reference"].status is Status.FAILED


def test_no_reference_is_skipped(check_function):
    results = check_function("tests.fns.Square", checks=("reference",))
    assert results["reference"].status is Status.SKIPPED
    assert "no `reference:`" in results["reference"].detail


def test_reference_that_does_not_load_is_an_error(check_function):
    # A spec mistake, like a Function that does not load: the case stops at setup.
    results = check_function(
        "tests.fns.Square", "reference: torch.nn.functional.nope\nargs: {x: {shape: [3]}}", checks=("reference",)
    )
    assert list(results) == ["setup"] and results["setup"].status is Status.ERROR
    assert results["setup"].detail.startswith("reference: cannot load `torch.nn.functional.nope`")


def test_reference_kwargs_are_passed(check_function):
    # With reduction=sum the reference is N times the Function's mean loss: a mismatch.
    text = spec("torch.nn.functional.cross_entropy", "[float32]") + "reference_kwargs: {reduction: sum}\n"
    results = check_function("lossctl.examples.cross_entropy.CrossEntropyLoss", text, checks=("reference",))
    assert results["reference"].status is Status.FAILED

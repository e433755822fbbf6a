"""Regressions for defects a review found: each test names the behaviour it pins down."""

from __future__ import annotations

import json

import pytest

import lossctl
from lossctl.errors import LossctlError
from lossctl.loader import parse_reference
from lossctl.report import SETUP, Status
from lossctl.target import classify
from tests import fns
from tests.conftest import REPO


def test_keyword_only_tensor_requiring_grad_is_refused(check_function):
    results = check_function(
        "tests.fns.weighted_by_keyword", "args: {x: {shape: [3]}, weight: {shape: [3]}}", checks=("gradcheck",)
    )
    assert list(results) == [SETUP]
    assert "takes `weight` by keyword" in results[SETUP].detail
    results = check_function(
        "tests.fns.weighted_by_keyword",
        "args: {x: {shape: [3]}, weight: {shape: [3], requires_grad: false}}",
        checks=("gradcheck",),
    )
    assert results["gradcheck"].status is Status.PASSED


def test_random_forward_that_saves_its_mask_raises_no_false_alarm(check_function):
    results = check_function("tests.fns.DropoutMSE", "args: {x: {shape: [5, 3]}, t: {shape: [5, 3]}}")
    assert not {k: r.detail for k, r in results.items() if r.status.is_problem}
    assert "random numbers" in results["noncontiguous"].detail  # skipped, and why


def test_reference_gets_arguments_by_name(check_function):
    spec = (
        "reference: torch.nn.functional.mse_loss\ndtypes: [float32]\n"
        "args: {input: {shape: [4, 3]}, target: {shape: [4, 3]}, reduction: sum}"
    )
    results = check_function("tests.fns.MSEWithReduction", spec, checks=("reference",))
    assert results["reference"].status is Status.PASSED, results["reference"].detail


def test_annotation_points_at_the_users_file_through_once_differentiable():
    from lossctl.examples.cross_entropy import CrossEntropyLoss

    file, line = classify(CrossEntropyLoss, "x").source_location()
    assert file.endswith("cross_entropy.py") and line > 0


def test_file_and_dotted_references_are_the_same_function(monkeypatch):
    monkeypatch.chdir(REPO)
    dotted = parse_reference("lossctl.examples.seed.CustomLossFunction").key()
    assert parse_reference("lossctl/examples/seed.py:CustomLossFunction").key() == dotted
    assert parse_reference("lossctl.examples.seed:CustomLossFunction").key() == dotted


def test_spec_found_for_the_file_form(run_cli):
    result = run_cli("check", "lossctl/examples/seed.py:CustomLossFunction", "--checks", "forward", "-j", "0", "-v")
    assert result.exit_code == 0
    assert "(6, 5)" in result.stdout  # configs/seed.yaml's dims, not the default [5, 3]


def test_github_annotations_never_corrupt_json_on_stdout(run_cli, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run_cli("check", "tests.fns.FlippedSign", "--checks", "gradcheck", "-j", "0", "-f", "json")
    assert result.exit_code == 1
    json.loads(result.stdout)


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_user_prints_never_corrupt_json_on_stdout(run_cli, jobs):
    result = run_cli("check", "tests.fns.Prints", "--checks", "forward", "-j", jobs, "-f", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_sys_exit_in_forward_is_the_users_error(run_cli, jobs):
    result = run_cli("check", "tests.fns.CallsSysExit", "--checks", "forward", "-j", jobs, "-f", "json")
    assert result.exit_code == 1
    (check,) = json.loads(result.stdout)["cases"][0]["checks"]
    assert check["status"] == "error" and "SystemExit: 3" in check["detail"]
    assert "lossctl failed" not in check["detail"]


def test_api_objects_cannot_go_to_workers():
    with pytest.raises(LossctlError, match="runs in this process only"):
        lossctl.check(fns.Square, "args: {x: {shape: [3]}}", jobs=1)


def test_fail_slower_with_nothing_to_compare_is_an_error(run_cli, tmp_path):
    saved = tmp_path / "b.json"
    fast = ("--min-time", "0.01", "--max-time", "0.1")
    assert run_cli("bench", "tests.fns.Square", *fast, "--save", str(saved)).exit_code == 0
    result = run_cli("bench", "tests.fns.NewStyleMul", *fast, "--compare", str(saved), "--fail-slower", "10%")
    assert result.exit_code == 2 and "no case matches" in result.stderr


def test_skip_adds_to_the_configs_skip(run_cli, tmp_path):
    (tmp_path / "lossctl.yaml").write_text("skip: [vmap]\njobs: 0\n")
    result = run_cli("check", "tests.fns.Square", "--skip", "compile,forward_ad", "-f", "json", cwd=tmp_path)
    checks = [c["check"] for c in json.loads(result.stdout)["cases"][0]["checks"]]
    assert "vmap" not in checks and "forward_ad" not in checks and "gradcheck" in checks

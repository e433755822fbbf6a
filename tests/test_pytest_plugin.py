"""The pytest plugin: spec files as test items, one per case × check, run by pytest itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from tests.conftest import REPO


def run_pytest(*args, cwd):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    summary = result.stdout.strip().splitlines()[-1]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return result, counts


def test_bundled_configs_give_the_expected_counts(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    result, counts = run_pytest("--lossctl", "configs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    # 7 cases × (24 default checks + `verified`): 130 pass, 52 skip (as `lossctl check configs/*.yaml`),
    # and one skipped item per distributed spec under configs/distributed/ (7).
    assert counts == {"passed": 130, "skipped": 52}


def test_failures_carry_the_diagnosis(tmp_path):
    (tmp_path / "broken.yaml").write_text(
        "function: lossctl.examples.broken.ClippedGradMSELoss\n"
        "args: {input: {shape: [4, 3]}, target: {shape: [4, 3]}}\n"
    )
    result, counts = run_pytest("--lossctl", "broken.yaml", "-rf", cwd=tmp_path)
    assert result.returncode == 1
    # linearity, and the checks that feed grad_output outside [-1, 1] (gradient_scaled, double_backward)
    assert counts["failed"] == 3
    assert "FAILED broken.yaml::ClippedGradMSELoss::linearity" in result.stdout
    assert "broken.yaml::ClippedGradMSELoss::gradcheck" not in result.stdout.split("short test summary")[-1]
    assert "not homogeneous" in result.stdout and "hint: backward clips" in result.stdout


def test_off_by_default_and_other_yaml_left_alone(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "not_a_spec.yaml").write_text("key: value\n")
    result, _ = run_pytest("configs", cwd=tmp_path)
    assert "no tests ran" in result.stdout
    (tmp_path / "pytest.ini").write_text("[pytest]\nlossctl = true\n")
    _, counts = run_pytest("configs", cwd=tmp_path)
    assert counts == {"passed": 130, "skipped": 52}


def test_invalid_spec_is_one_failing_item(tmp_path):
    (tmp_path / "bad.yaml").write_text("function: tests.fns.Square\nargz: {}\n")
    result, counts = run_pytest("--lossctl", "bad.yaml", cwd=tmp_path)
    assert counts == {"failed": 1}
    assert "argz: unknown key" in result.stdout


FLOAT32_ONLY = """
import torch


class Float32Only(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if x.dtype != torch.float32:
            raise TypeError("float32 only")
        return x * 3

    @staticmethod
    def backward(ctx, grad):
        return grad * 3
"""


def test_plugin_reads_the_project_config_and_fails_an_unverified_case(tmp_path):
    (tmp_path / "f32.py").write_text(FLOAT32_ONLY)
    (tmp_path / "spec.yaml").write_text("function: f32.py:Float32Only\nargs: {x: {shape: [3], dtype: float32}}\n")
    (tmp_path / "lossctl.yaml").write_text("skip: [vmap]\n")
    result, counts = run_pytest("--lossctl", "spec.yaml", "-rA", cwd=tmp_path)
    assert counts["failed"] == 1, result.stdout[-2000:]
    assert "PASSED spec.yaml::Float32Only::forward" in result.stdout and "::vmap" not in result.stdout
    assert "FAILED spec.yaml::Float32Only::verified" in result.stdout
    assert "no gradient value was verified" in result.stdout

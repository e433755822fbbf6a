"""The Python API: lossctl.check and lossctl.assert_gradients inside ordinary tests."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import lossctl
from lossctl.errors import LossctlError
from tests import fns
from tests.conftest import REPO


def test_check_by_reference_object_and_spec():
    assert lossctl.check("tests.fns.Square", checks=["gradcheck"], device="cpu").ok
    report = lossctl.check(fns.DoubledGrad, checks=["gradcheck"], device="cpu")
    assert not report.ok and report.cases[0].checks[0].hint.startswith("gradient is 2.000× too large")
    report = lossctl.check(fns.Square, "dims: {N: [2, 3]}\nargs: {x: {shape: [N]}}", device="cpu")
    assert [c.case for c in report.cases] == ["Square[N=2]", "Square[N=3]"] and report.ok
    report = lossctl.check(spec={"function": "tests.fns.Square", "args": {"x": {"shape": [2]}}}, checks=["forward"])
    assert report.ok


def test_assert_gradients_passes_and_fails_with_the_diagnosis():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert lossctl.assert_gradients(fns.Square, x).ok
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    lossctl.assert_gradients(fns.ScaledSum, x, w, 0.5)
    with pytest.raises(AssertionError, match="sign is flipped") as info:
        lossctl.assert_gradients(fns.FlippedSign, x, checks=["gradcheck"])
    assert "FlippedSign · gradcheck: FAILED" in str(info.value)


def test_misuse_raises_lossctl_error():
    with pytest.raises(LossctlError, match="unknown check"):
        lossctl.check("tests.fns.Square", checks=["nope"])
    with pytest.raises(LossctlError, match="takes 1 arguments, got 2"):
        lossctl.assert_gradients(fns.Square, torch.ones(2), torch.ones(2))


def test_inputs_for_rebuilds_the_exact_inputs():
    spec = "function: tests.fns.Square\nseed: 4\nargs: {x: {shape: [3]}}"
    a, b = lossctl.inputs_for(spec), lossctl.inputs_for(spec)
    assert torch.equal(a["x"], b["x"]) and a["x"].dtype == torch.float64


def test_importing_lossctl_does_not_import_torch():
    code = "import sys, lossctl; assert 'torch' not in sys.modules; print(lossctl.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_assert_gradients_runs_a_local_function_in_this_process():
    """A Function class defined inside a test cannot be pickled to a worker: it runs in-process."""

    class LocalSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert lossctl.assert_gradients(LocalSquare, x, checks=["gradcheck"]).ok


def test_the_api_refuses_what_the_cli_refuses_and_runs_under_no_grad():
    for bad in ({"seed": -1}, {"checks": ["forward"], "skip": ["forward"]}, {"device": ""}):
        with pytest.raises(LossctlError):
            lossctl.check("tests.fns.Square", **bad)
    with torch.no_grad():
        assert lossctl.check("tests.fns.Square", checks=["forward", "gradcheck"]).ok


def test_the_api_and_the_plugin_keep_the_input_memory_bound(tmp_path):
    big = "function: tests.fns.Square\ndims: {N: 200000, C: 1000}\nargs: {x: {shape: [N, C]}}\n"  # 1.6 GB
    with pytest.raises(LossctlError) as refused:
        lossctl.check(spec=big, checks=["forward"])
    assert "allow_large=True" in str(refused.value.hint) and "--allow-large" not in str(refused.value.hint)
    (tmp_path / "big.yaml").write_text(big)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--lossctl", str(tmp_path / "big.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 1 and "1.0 GiB" in done.stdout and "1 failed" in done.stdout, done.stdout[-2000:]
    assert "the plugin keeps the bound" in done.stdout

"""What differs on a GPU, tested on the CPU where the logic does not depend on the device:
device_parity's comparison, determinism's atomics verdict, and the message for tensors created
on the CPU inside a Function. None of this ran on a GPU here."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import torch
from torch.autograd import Function

from lossctl.atomics import atomics_outcome, deterministic_algorithms
from lossctl.case import Case
from lossctl.checks.determinism import _max_diff
from lossctl.checks.device_parity import compare_with_cpu_float64
from lossctl.device import mismatch_hint
from lossctl.loader import describe_exception
from lossctl.report import Status
from lossctl.runner import build_cases
from lossctl.spec import load_specs
from lossctl.suite import Job


class Cube(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x**3).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * x * x * grad


class CubeWrongOffFloat64(Cube):
    """Right in float64, 1% off in any other dtype: what a separate low-precision (or GPU) kernel
    path with a bug looks like to a check that compares with float64."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        factor = 1.0 if x.dtype == torch.float64 else 1.01
        return 3 * x * x * grad * factor


def case_of(function: str) -> Case:
    text = f"""
    function: tests.test_cuda_paths.{function}
    dims: {{N: 40}}
    args:
      x: {{shape: [N], dtype: float32}}
    """
    (spec,) = load_specs(textwrap.dedent(text).lstrip(), source="t.yaml")
    (case,) = build_cases(Job(spec), torch.device("cpu"), 0)
    assert isinstance(case, Case)
    return case


# --------------------------------------------------------------------------- device_parity


def test_device_parity_is_skipped_on_the_cpu(check_function):
    result = check_function("tests.fns.Square", checks=("device_parity",))["device_parity"]
    assert result.status is Status.SKIPPED
    assert "this run is on the CPU" in result.detail


def test_parity_comparison_passes_a_right_function():
    outcome = compare_with_cpu_float64(case_of("Cube"))
    assert outcome.status is Status.PASSED, outcome.detail
    assert "equals CPU float64 within 0.00035" in outcome.detail
    assert set(outcome.data["errors"]) == {"output 0", "∂x"}


def test_parity_comparison_fails_a_kernel_that_is_off_outside_float64():
    outcome = compare_with_cpu_float64(case_of("CubeWrongOffFloat64"))
    assert outcome.status is Status.FAILED
    assert outcome.detail.startswith("∂x on cpu differs from the CPU float64 result: rel err 0.01 > 0.00035")
    assert "√ε of float32" in outcome.detail
    assert "tail of the input" in outcome.hint


class RandomlyWeighted(torch.nn.Module):
    """Parameters drawn at construction: the CPU twin must reuse them, not draw its own."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(40))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weight * x * x).sum()


def test_parity_comparison_reuses_a_modules_parameters():
    outcome = compare_with_cpu_float64(case_of("RandomlyWeighted"))
    assert outcome.status is Status.PASSED, outcome.detail


# --------------------------------------------------------------------------- atomics


def _grads(values: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(values, dtype=torch.float32)]


def test_a_backward_that_repeats_under_deterministic_algorithms_is_named_atomics():
    draws = iter(range(100))

    def rerun() -> list[torch.Tensor]:
        # Like index_add on CUDA: the last bits vary, unless deterministic algorithms are on.
        jitter = 0 if torch.are_deterministic_algorithms_enabled() else next(draws) * 1e-7
        return _grads([1.0 + jitter, 2.0])

    first, second = rerun(), rerun()
    diff = _max_diff(first, second)
    outcome = atomics_outcome(torch.device("cuda"), rerun, first, second, diff, {}, _max_diff)
    assert outcome is not None and outcome.status is Status.FAILED
    assert "nondeterministic (max diff 1.19e-07" in outcome.detail
    assert "repeat bitwise under torch.use_deterministic_algorithms(True)" in outcome.detail
    assert "the gradient is not wrong" in outcome.detail
    assert "tolerance.nondet_tol: 1e-06" in outcome.hint
    assert outcome.data["cause"] == "atomics"
    assert not torch.are_deterministic_algorithms_enabled()  # restored


def test_last_bit_differences_without_a_deterministic_kernel_are_still_atomics():
    values = iter([1.0, 1.0 + 2**-23, 1.0 + 2**-22, 1.0])
    outcome = atomics_outcome(
        torch.device("cuda"),
        lambda: _grads([next(values)]),
        _grads([1.0]),
        _grads([1.0 + 2**-23]),
        1.2e-7,
        {},
        _max_diff,
    )
    assert outcome is not None
    assert "no more than a reordered sum" in outcome.detail


def test_large_differences_are_not_blamed_on_atomics():
    values = iter([1.0, 1.5, 2.0, 2.5])
    outcome = atomics_outcome(
        torch.device("cuda"), lambda: _grads([next(values)]), _grads([1.0]), _grads([1.5]), 0.5, {}, _max_diff
    )
    assert outcome is None


def test_deterministic_algorithms_are_restored_after_an_error():
    with pytest.raises(ValueError), deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        raise ValueError
    assert not torch.are_deterministic_algorithms_enabled()


# --------------------------------------------------------------------------- tensors on two devices


@pytest.mark.parametrize(
    "message",
    [
        # Synthetic: the two wordings CUDA gives (no GPU here to raise them).
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
        "Expected all tensors to be on the same device, but got mat2 is on cpu, different from other tensors on "
        "cuda:0 (when checking argument in method wrapper_CUDA_mm)",
    ],
)
def test_cuda_device_mismatch_messages_name_the_likely_cause(message):
    hint = mismatch_hint(message)
    assert hint is not None
    assert hint.startswith("tensors on cpu and cuda:0 meet in one op")
    assert "torch.eye(n, device=x.device, dtype=x.dtype)" in hint


def test_two_gpus_are_not_blamed_on_the_cpu():
    message = (
        "Expected all tensors to be on the same device, but got index is on cuda:1, "
        "different from other tensors on cuda:0"
    )
    assert (
        mismatch_hint(message)
        == "tensors on cuda:0 and cuda:1 meet in one op: a device hard-coded inside the Function (cuda:0)?"
    )
    assert mismatch_hint("mat1 and mat2 shapes cannot be multiplied") is None


class EyeOnTheCpu(Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * torch.eye(x.shape[-1])  # no device=: on the CPU whatever x is on


def test_a_real_mismatch_names_the_users_line_and_the_fix():
    x = torch.ones(3, 3, device="meta")  # a second device the CPU-only build has
    with pytest.raises(RuntimeError) as raised:
        EyeOnTheCpu.apply(x)
    text = describe_exception(raised.value)
    assert "(at test_cuda_paths.py:" in text and "in forward)" in text
    assert "tensors on cpu and meta meet in one op" in text

"""The chunked linear+cross-entropy example: right against F.cross_entropy, never [N, V] at once,
checked and benched through lossctl, and its broken copies fail."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lossctl.bench import BenchOptions, run_bench
from lossctl.examples.linear_ce import (
    LinearCrossEntropy,
    LinearCrossEntropyIgnoring,
    linear_cross_entropy_reference,
    with_ignored_rows,
)
from lossctl.spec import load_spec_file
from lossctl.suite import Job
from tests.conftest import REPO


def inputs(n: int, d: int, v: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_()
    weight = (0.5 * torch.randn(v, d, generator=gen, dtype=dtype)).requires_grad_()
    target = torch.randint(0, v, (n,), generator=gen)
    return hidden, weight, target


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(("n", "chunk"), [(16, 8), (21, 8), (5, 8), (21, 1)])
def test_matches_cross_entropy_of_the_full_logits_with_ignored_rows(n, chunk):
    hidden, weight, target = inputs(n, 4, 7)
    target = with_ignored_rows(target, 4)
    loss = LinearCrossEntropy.apply(hidden, weight, target, -100, chunk)
    want = F.cross_entropy(hidden @ weight.T, target, ignore_index=-100)
    torch.testing.assert_close(loss, want)
    cot = torch.tensor(1.7, dtype=torch.float64)
    got_grads = torch.autograd.grad(loss, (hidden, weight), cot)
    want_grads = torch.autograd.grad(want, (hidden, weight), cot)
    for got, expected in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, expected)
    ignored = target == -100
    assert ignored.sum() == n // 4
    assert bool((got_grads[0][ignored] == 0).all())  # an ignored row gets no gradient


def test_with_ignored_rows_marks_every_kth_row_and_never_a_lone_row():
    target = torch.arange(10)
    assert with_ignored_rows(target, 4).tolist() == [0, 1, 2, -100, 4, 5, 6, -100, 8, 9]
    assert with_ignored_rows(target[:1], 4).tolist() == [0]
    assert with_ignored_rows(target, 0).tolist() == target.tolist()


def test_never_materializes_the_n_by_v_logits():
    n, v, chunk = 64, 50, 8
    hidden, weight, target = inputs(n, 4, v, torch.float32)
    with LargestTensor() as mode:
        loss = LinearCrossEntropyIgnoring.apply(hidden, weight, target, 4, -100, chunk)
        torch.autograd.grad(loss, (hidden, weight))
    assert mode.largest <= chunk * v
    with LargestTensor() as plain:
        loss = linear_cross_entropy_reference(hidden, weight, target)
        torch.autograd.grad(loss, (hidden, weight))
    assert plain.largest >= n * v  # the mode does see the full logits when they exist


def test_bfloat16_stays_close_to_the_float64_truth():
    hidden, weight, target = inputs(37, 16, 29)
    args = (with_ignored_rows(target, 4), -100, 8)
    truth = LinearCrossEntropy.apply(hidden.detach(), weight.detach(), *args)
    low = LinearCrossEntropy.apply(hidden.detach().bfloat16(), weight.detach().bfloat16(), *args)
    assert low.dtype == torch.bfloat16
    assert abs(float(low) - float(truth)) <= 0.02 * abs(float(truth))


def test_lossctl_check_passes_the_example(run_cli):
    result = run_cli("check", "configs/linear_ce.yaml", "--checks", "gradcheck,reference", "--format", "json")
    assert result.exit_code == 0, result.stdout
    cases = json.loads(result.stdout)["cases"]
    assert [c["case"] for c in cases] == ["LinearCrossEntropyIgnoring[N=8]", "LinearCrossEntropyIgnoring[N=11]"]
    assert all(check["status"] == "passed" for c in cases for check in c["checks"])


def test_the_broken_copies_fail_on_the_intended_checks(run_cli):
    result = run_cli(
        "check", "tests/specs/linear_ce_broken.yaml", "--checks", "gradcheck,reference", "--format", "json"
    )
    assert result.exit_code == 1, result.stdout
    status = {(c["case"], r["check"]): r for c in json.loads(result.stdout)["cases"] for r in c["checks"]}
    # The dropped tail only shows where N is not a multiple of the chunk.
    assert status[("tail-dropped[N=8]", "gradcheck")]["status"] == "passed"
    tail = status[("tail-dropped[N=11]", "gradcheck")]
    assert tail["status"] == "failed"
    assert "wrong only at index 8, 9, 10 of N" in tail["hint"]
    # Counting ignored rows in the mean is consistent with its own backward: only the reference sees it.
    assert status[("mean-over-all-rows", "gradcheck")]["status"] == "passed"
    mean = status[("mean-over-all-rows", "reference")]
    assert mean["status"] == "failed" and "out error" in mean["detail"]


def test_bench_prints_the_memory_saving_against_the_reference():
    (spec,) = load_spec_file(REPO / "configs" / "linear_ce.yaml")
    options = BenchOptions(
        device="cpu", dims={"N": (64,), "V": (128,)}, min_time=0.005, max_time=0.02, threads=1, roofline=False
    )
    report = run_bench([Job(spec)], options)
    (case,) = report.cases
    assert case.error is None, case.error
    assert case.memory_ratio is not None and case.memory_ratio < 0.25  # 4 of 64 rows of logits at a time
    assert case.speedup is not None and case.speedup > 0

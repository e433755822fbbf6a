"""torch's global state is restored after every case and check: a Function that changes it gets a
note, and the next case's verdict is the one it gets alone."""

from __future__ import annotations

import functools

import pytest
import torch

from lossctl.runner import RunOptions, run_checks
from lossctl.spec import Spec
from lossctl.suite import Job
from lossctl.torch_state import isolated_state, state_note

CHECKS = ("forward", "gradcheck")
PAIRS = (
    # (what leaks, a case whose verdict it would change)
    ("SetsDefaultFloat64", "ZerosBuffer"),  # hides a float32-buffer bug: gradcheck would pass
    ("SetsDeterministic", "Unpools"),  # max_unpool has no deterministic CPU kernel: forward would raise
    ("SetsAnomaly", "NaNBackward"),  # a NaN gradient would raise instead of failing gradcheck
)


def _jobs(names: list[str]) -> list[Job]:
    return [Job(Spec(function=f"tests.hostile.{n}", name=n, args_given=False)) for n in names]


@functools.cache
def _alone() -> dict[str, list[tuple[str, str]]]:
    return _verdicts(0, [follower for _, follower in PAIRS])[0]


def _verdicts(jobs_: int, names: list[str]) -> tuple[dict[str, list[tuple[str, str]]], dict[str, tuple[str, ...]]]:
    report = run_checks(_jobs(names), RunOptions(device="cpu", checks=CHECKS, jobs=jobs_, timeout=120))
    verdicts = {c.case: [(r.check, r.status.value) for r in c.checks] for c in report.cases}
    return verdicts, {c.case: c.notes for c in report.cases}


@pytest.mark.parametrize("jobs", [0, 1], ids=["-j 0", "-j 1"])
def test_leak_pairs_give_each_case_its_verdict_alone(jobs: int) -> None:
    alone = _alone()
    # The bugs are found alone: the leaks would have hidden them or changed how they show.
    assert ("gradcheck", "failed") in alone["ZerosBuffer"] and ("gradcheck", "failed") in alone["NaNBackward"]
    assert alone["Unpools"] == [("forward", "passed"), ("gradcheck", "passed")]
    paired, notes = _verdicts(jobs, [name for pair in PAIRS for name in pair])
    for leaker, follower in PAIRS:
        assert paired[follower] == alone[follower], (leaker, follower)
        assert not any("global state" in note for note in notes[follower])
    assert "default dtype (float32 → float64) in forward" in " ".join(notes["SetsDefaultFloat64"])
    assert "deterministic algorithms (off/off → on/off)" in " ".join(notes["SetsDeterministic"])
    assert "anomaly detection (off/on → on/on)" in " ".join(notes["SetsAnomaly"])


def test_threads_and_grad_mode_from_a_constructor_are_restored_and_named() -> None:
    threads = torch.get_num_threads()
    _, notes = _verdicts(0, ["ChangesThreads", "GradOffModule"])
    assert "number of threads (1 → 3)" in " ".join(notes["ChangesThreads"])  # a case runs on 1 thread
    assert "grad mode (on → off)" in " ".join(notes["GradOffModule"])
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()


def test_isolated_state_restores_every_setting_and_says_what_changed() -> None:
    before_rng = torch.get_rng_state()
    with isolated_state("outer") as changed:
        with isolated_state("inner"):
            torch.set_default_dtype(torch.float64)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.set_float32_matmul_precision("medium")
            torch.set_autocast_enabled("cpu", True)
            torch.backends.cudnn.benchmark = True
            torch.rand(3)  # moves the RNG: restored, not reported
        assert torch.get_default_dtype() == torch.float32  # the inner block restored already
    assert torch.equal(torch.get_rng_state(), before_rng)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.is_autocast_enabled("cpu") and not torch.backends.cudnn.benchmark
    whats = [what for what, _ in changed]
    assert whats == [
        "default dtype (float32 → float64)",
        "deterministic algorithms (off/off → on/on)",
        "float32 matmul precision (highest → medium)",
        "autocast (cpu) (off/bfloat16 → on/bfloat16)",
        "torch.backends.cudnn.benchmark (off → on)",
    ]
    assert {label for _, label in changed} == {"inner"}
    note = state_note(changed)
    assert note is not None and note.startswith("the Function changed torch's global state: default dtype")
    assert state_note([]) is None

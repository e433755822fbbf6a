"""Memory: each case's own peak and each check's peak above the case's baseline (lossctl/memory.py),
in JSON and -v, and checks that hold no more than a few copies of the inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest
import torch

from lossctl import memory
from lossctl.case import Case
from lossctl.checks import inplace, mutation
from lossctl.loader import load_object
from lossctl.render.json_report import schema_path
from lossctl.spec import load_specs, sweep
from lossctl.target import classify

MB = 2**20
per_case = pytest.mark.skipif(
    memory.high_water_mb() is None or not os.access("/proc/self/clear_refs", os.W_OK),
    reason="needs Linux's resettable VmHWM (/proc/self/clear_refs)",
)


@pytest.fixture(autouse=True)
def _lossctl_owns_the_process(monkeypatch):
    """As in `lossctl check` and its workers (the CLI tests claim it themselves; direct uses of
    CaseMemory here need it too)."""
    monkeypatch.setattr(memory, "OWNS_PROCESS", True)


def mse_spec(n: object) -> str:
    return (
        "function: lossctl.examples.scale.MeanSquaredError\n"
        f"dims: {{N: {n}, C: 10}}\n"
        "args: {input: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}}\n"
    )


def run_json(run_cli, tmp_path, spec_text: str, *args: str) -> tuple[dict, str]:
    spec = tmp_path / "mse.yaml"
    spec.write_text(spec_text)
    out = tmp_path / "report.json"
    result = run_cli("check", str(spec), "-j", "0", "-v", "-f", "json", "-o", str(out), "-f", "table", *args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, json.loads(schema_path().read_text()))
    return data, result.stdout


@per_case
def test_each_case_reports_its_own_peak_not_the_process_s(run_cli, tmp_path):
    # a big case then a small one, in one process: the small one's peak is its own
    data, stdout = run_json(run_cli, tmp_path, mse_spec("[400000, 1000]"), "--checks", "forward,backward")
    big, small = (case["resources"] for case in data["cases"])
    assert big["peak_rss_per_case"] == small["peak_rss_per_case"] == 1.0
    assert big["inputs_mb"] == pytest.approx(2 * 400_000 * 10 * 8 / MB)
    assert small["inputs_mb"] == pytest.approx(2 * 1000 * 10 * 8 / MB)
    # the big case's checks copied its 61 MB of inputs at least once; the small one's stayed small
    assert big["peak_above_baseline_mb"] >= big["inputs_mb"]
    assert small["peak_above_baseline_mb"] < 20
    assert small["peak_rss_mb"] < big["peak_rss_mb"] - big["inputs_mb"] / 2
    for resources in (big, small):
        assert resources["baseline_rss_mb"] <= resources["peak_rss_mb"]
        assert resources["peak_above_baseline_mb"] == pytest.approx(
            resources["peak_rss_mb"] - resources["baseline_rss_mb"]
        )
    assert big["peak_x_inputs"] == pytest.approx(big["peak_above_baseline_mb"] / big["inputs_mb"])
    assert "peak_x_inputs" not in small  # 0.15 MB of inputs: the ratio would be RSS granularity
    # one forward+backward's own peak: measured for the large case only
    assert 0 < big["forward_backward_peak_mb"] < big["peak_above_baseline_mb"] + 1
    ratio = big["peak_above_baseline_mb"] / big["forward_backward_peak_mb"]
    assert big["peak_x_forward_backward"] == pytest.approx(ratio)
    assert "forward_backward_peak_mb" not in small
    # every check's peak is within its case's
    for case in data["cases"]:
        for check in case["checks"]:
            assert 0 <= check["peak_mb"] <= case["resources"]["peak_above_baseline_mb"] + 0.5
    assert re.search(
        r"MeanSquaredError\[N=400000\]: checks [\d.]+ s of a 60 s budget, .*peak RSS \d+ MB \(\+\d+ MB = "
        r"[\d.]+× the inputs \(61 MB\), [\d.]+× one forward\+backward's \+\d+ MB\); worst check \w+ \+\d+ MB",
        stdout.replace("\n", " "),
    ), stdout


def test_where_the_peak_cannot_be_reset_the_process_s_peak_is_given_and_said(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "reset_high_water", lambda: False)
    data, stdout = run_json(run_cli, tmp_path, mse_spec(300), "--checks", "forward")
    (case,) = data["cases"]
    assert case["resources"]["peak_rss_per_case"] == 0.0
    assert case["resources"]["peak_rss_mb"] > 10
    assert "peak_above_baseline_mb" not in case["resources"]
    assert all(check["peak_mb"] is None for check in case["checks"])
    assert "(the process's so far: earlier cases included)" in stdout


def test_the_python_api_never_resets_its_caller_s_peak(tmp_path):
    """Resetting VmHWM lowers the ru_maxrss a process and its parent later read: lossctl does it only
    in processes that are its own (the CLI, its workers), never inside a caller's (API, plugin)."""
    probe = (
        "import resource, lossctl, torch\n"
        "x = torch.ones(60 * 2**20 // 8, dtype=torch.float64); del x  # a 60 MB peak before lossctl runs\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"report = lossctl.check(spec={mse_spec(300)!r}, checks=['forward'])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(report.cases[0].resources['peak_rss_per_case'], after >= before)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0.0", "True"], done.stderr[-2000:]


@per_case
def test_a_stretch_s_peak_is_measured_above_the_case_s_baseline():
    meter = memory.CaseMemory(torch.device("cpu"), large=True)
    with meter.measure() as small:
        torch.ones(1000).sum()
    with meter.measure() as big:
        block = torch.ones(40 * MB // 8, dtype=torch.float64)  # 40 MB, touched
        del block
    assert small.mb is not None and small.mb < 10
    assert big.mb is not None and 38 <= big.mb < 60
    assert meter.peak_above_baseline_mb() == pytest.approx(big.mb, abs=1)


@per_case
@pytest.mark.parametrize(
    "checks, budget",
    [
        # gradient_blocks spends half of what is left of the budget: alone, so the others never
        # skip for the budget on a loaded machine
        ("undefined_grad,inplace,mutation,autocast", "60"),
        ("gradient_blocks", "4"),
    ],
    ids=["checks", "gradient_blocks"],
)
def test_owned_checks_hold_a_few_copies_of_the_inputs(run_cli, tmp_path, checks, budget):
    # [5·10⁵, 10] float64: 76 MB of inputs, each tensor above glibc's largest mmap threshold (32 MB),
    # so freed memory leaves RSS at once and the figures are repeatable (at [2·10⁵, 10] heap
    # retention inside a check moves them by ±50 MB). The bound: one forward+backward's own peak
    # + 5 copies of the inputs (the target is 4: benchmarks/memory.py at [10⁶, 10]).
    data, _ = run_json(run_cli, tmp_path, mse_spec(500_000), "--checks", checks, "--budget", budget)
    (case,) = data["cases"]
    resources = case["resources"]
    bound = resources["forward_backward_peak_mb"] + 5 * resources["inputs_mb"]
    peaks = {check["check"]: check["peak_mb"] for check in case["checks"] if check["status"] == "passed"}
    assert set(peaks) == set(checks.split(",")), case["checks"]
    over = {name: round(peak) for name, peak in peaks.items() if peak > bound}
    assert not over, f"over {bound:.0f} MB: {over}"


def _mse_case(n: int) -> Case:
    (spec,) = load_specs(mse_spec(n), source="test.yaml")
    target = classify(load_object(spec.function)[0], spec.function)
    return Case.build("mse", spec, sweep(spec)[0], target, torch.device("cpu"), 0)


@per_case
@pytest.mark.parametrize("check", [inplace.check_inplace, mutation.check_mutation], ids=["inplace", "mutation"])
def test_a_check_leaves_nothing_alive_behind_it(check):
    # the saved-tensor hooks close a cycle through C++ (graph → hook → the check's list → the
    # graph) that Python's collector cannot see: each run used to leak the graph and its inputs
    case = _mse_case(200_000)
    with torch.enable_grad():
        check(case)
        memory.release_freed()
        before = memory.rss_mb()
        for _ in range(3):
            assert check(case).status.value == "passed"
    memory.release_freed()
    assert memory.rss_mb() - before < memory.tensor_bytes(case.values) / MB

"""lossctl.roofline: bytes and FLOPs per call, the cached machine limits, % of roofline in bench."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from lossctl import roofline
from lossctl.bench import BenchOptions, run_bench
from lossctl.roofline import Limits, PhaseWork, Work, figures, least_work, machine_limits, measure_work
from lossctl.spec import load_specs
from lossctl.suite import Job

FAST = {"min_time": 0.01, "max_time": 0.1, "threads": 1}
MIN_TIME = ("--min-time", "0.01", "--max-time", "0.1")


@pytest.fixture
def small_measurements(monkeypatch):
    """Limits measured on small buffers and matrices, so a test pays milliseconds, not seconds."""
    monkeypatch.setitem(roofline.COPY_BYTES, "cpu", 4 * 2**20)
    monkeypatch.setitem(roofline.MATMUL_N, "cpu", (64, 128))


# --------------------------------------------------------------------------- work per call


def test_matmul_work_counts_each_tensor_once_and_its_flops():
    a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    cot = [torch.randn(6, 5, dtype=torch.float64)]
    work = measure_work(lambda: [a @ b], [a, b], [a, b], cot)
    element = 8
    inputs, output = (24 + 20) * element, 30 * element
    assert work.forward == Work(bytes=inputs + output, flops=2 * 6 * 4 * 5)
    assert work.backward == Work(bytes=output + inputs + inputs, flops=2 * (2 * 6 * 4 * 5))
    assert work.forward_backward == Work(bytes=inputs + output + output + inputs, flops=3 * 2 * 6 * 4 * 5)


def test_elementwise_work_has_no_flops_and_a_view_is_read_once():
    x = torch.randn(10, dtype=torch.float32, requires_grad=True)
    work = measure_work(lambda: [(x * x).sum()], [x, x[:5]], [x], [torch.ones(())])
    assert work.forward == Work(bytes=40 + 4, flops=0)  # x and its view share one storage
    assert work.backward is not None and work.backward.flops == 0


def test_roofline_is_the_larger_of_the_memory_and_compute_times():
    limits = Limits(key="k", bandwidth=1e9, matmul={"float32": 1e12})
    memory = roofline.roofline_seconds(Work(bytes=10**9, flops=10**9), limits, "float32")
    compute = roofline.roofline_seconds(Work(bytes=10**6, flops=10**12), limits, "float32")
    assert memory == (pytest.approx(1.0), "memory")
    assert compute == (pytest.approx(1.0), "compute")
    assert roofline.roofline_seconds(Work(bytes=1, flops=1), limits, "bfloat16") is None  # no rate measured


def test_figures_judge_both_callables_against_the_fewer_flops():
    limits = Limits(key="k", bandwidth=1e9, matmul={"float32": 1e9})
    mine = PhaseWork(forward=Work(bytes=0, flops=3 * 10**9))  # recomputes: 3× the FLOPs
    theirs = PhaseWork(forward=Work(bytes=0, flops=10**9))
    least = least_work(mine, theirs)
    assert least is not None and least.forward.flops == 10**9
    got = figures({"forward": 2.0}, mine, least, limits, "float32")["forward"]
    assert got.roofline_s == pytest.approx(1.0)
    assert got.fraction == pytest.approx(0.5)
    assert got.flops_per_s == pytest.approx(1.5e9)  # its own FLOPs, per second
    assert got.bound == "compute"


# --------------------------------------------------------------------------- cached limits


def test_limits_are_measured_once_then_read_from_the_cache(tmp_path, small_measurements, monkeypatch):
    cpu = torch.device("cpu")
    first = machine_limits(cpu, ["float32"], threads=1, cache_dir=tmp_path)
    assert first.bandwidth > 1e6 and first.matmul["float32"] > 1e6
    assert first.cache_path == str(tmp_path / "limits.json")
    saved = json.loads((tmp_path / "limits.json").read_text())
    assert saved[first.key]["matmul"]["float32"] == first.matmul["float32"]

    def must_not_measure(*_args, **_kwargs):
        raise AssertionError("measured although cached")

    monkeypatch.setattr(roofline, "measure_bandwidth", must_not_measure)
    monkeypatch.setattr(roofline, "measure_matmul", must_not_measure)
    again = machine_limits(cpu, ["float32"], threads=1, cache_dir=tmp_path)
    assert again.bandwidth == first.bandwidth and again.matmul == first.matmul
    with pytest.raises(AssertionError, match="measured although cached"):
        machine_limits(cpu, ["float32"], threads=1, cache_dir=tmp_path, refresh=True)


def test_a_new_dtype_or_thread_count_is_measured_and_added(tmp_path, small_measurements):
    cpu = torch.device("cpu")
    machine_limits(cpu, ["float32"], threads=1, cache_dir=tmp_path)
    both = machine_limits(cpu, ["float32", "float64"], threads=1, cache_dir=tmp_path)
    assert set(both.matmul) == {"float32", "float64"}
    machine_limits(cpu, [], threads=2, cache_dir=tmp_path)
    keys = json.loads((tmp_path / "limits.json").read_text())
    assert sorted(k.rsplit("|", 1)[1] for k in keys) == ["1 threads", "2 threads"]


def test_an_unwritable_or_corrupt_cache_is_not_an_error(tmp_path, small_measurements):
    cpu = torch.device("cpu")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    limits = machine_limits(cpu, [], threads=1, cache_dir=blocker / "lossctl")
    assert limits.bandwidth > 0 and limits.cache_path is None
    (tmp_path / "limits.json").write_text("{not json")
    assert machine_limits(cpu, [], threads=1, cache_dir=tmp_path).cache_path == str(tmp_path / "limits.json")


# --------------------------------------------------------------------------- in bench

LINEAR_SPEC = """
name: linear
function: torch.nn.functional.linear
dims: {N: 32, D: 16, V: 24}
args:
  input: {shape: [N, D], dtype: float32}
  weight: {shape: [V, D], dtype: float32}
"""


def test_bench_reports_rates_and_percent_of_roofline(tmp_path, small_measurements):
    jobs = [Job(s) for s in load_specs(textwrap.dedent(LINEAR_SPEC), source="t.yaml")]
    report = run_bench(jobs, BenchOptions(device="cpu", limits_cache=tmp_path, **FAST))
    assert report.limits is not None and "float32" in report.limits.matmul
    (case,) = report.cases
    work = case.function_result.work
    assert work.forward.flops == 2 * 32 * 16 * 24
    assert work.forward.bytes == (32 * 16 + 24 * 16 + 32 * 24) * 4
    phases = case.against(report.limits)["function"]
    assert set(phases) == {"forward", "backward", "forward_backward"}
    for f in phases.values():
        assert f.seconds > 0 and f.fraction > 0 and f.bytes_per_s > 0 and f.flops_per_s > 0
    data = report.to_dict()
    figures_json = data["cases"][0]["roofline"]["function"]["forward_backward"]
    assert figures_json["fraction_of_roofline"] == pytest.approx(phases["forward_backward"].fraction)
    assert data["limits"]["matmul"]["float32"] == report.limits.matmul["float32"]


def test_bench_table_and_json_show_the_limit_for_every_case(run_cli, limits_cache, small_measurements, tmp_path):
    saved = tmp_path / "run.json"
    result = run_cli("bench", "configs/cross_entropy.yaml", "--dims", "N=4,16", *MIN_TIME, "--save", str(saved))
    assert result.exit_code == 0, result.output
    assert "against the machine's limit: % of roofline" in result.stdout
    below = result.stdout.split("against the machine's limit")[1]
    assert "CrossEntropyLoss[N=4]" in below and "CrossEntropyLoss[N=16]" in below
    assert "cached in" in result.stdout and str(limits_cache / "lossctl" / "limits.json") in result.stdout
    assert (limits_cache / "lossctl" / "limits.json").exists()
    data = json.loads(saved.read_text())
    assert len(data["cases"]) == 2
    for case in data["cases"]:
        for who in ("function", "reference"):
            fb = case["roofline"][who]["forward_backward"]
            assert fb["bound"] == "memory" and fb["fraction_of_roofline"] > 0 and fb["bytes_per_s"] > 0


def test_no_cache_measures_again(run_cli, monkeypatch, small_measurements):
    calls = []
    real = roofline.measure_bandwidth
    monkeypatch.setattr(roofline, "measure_bandwidth", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_cli("bench", "tests.fns.Square", *MIN_TIME)
    cached = len(calls)
    result = run_cli("bench", "tests.fns.Square", *MIN_TIME, "--no-cache")
    assert result.exit_code == 0, result.output
    assert len(calls) == cached + 1


def test_a_saved_run_without_roofline_figures_still_compares(run_cli, tmp_path):
    saved = tmp_path / "old.json"
    result = run_cli("bench", "tests.fns.Square", *MIN_TIME, "--save", str(saved))
    assert result.exit_code == 0, result.output
    data = json.loads(saved.read_text())
    data.pop("limits")
    for case in data["cases"]:  # what a lossctl before the roofline figures wrote
        case.pop("roofline")
        for who in ("function_result", "reference"):
            if case[who]:
                case[who].pop("work")
    saved.write_text(json.dumps(data))
    again = run_cli("bench", "tests.fns.Square", *MIN_TIME, "--compare", str(saved), "--format", "json")
    assert again.exit_code == 0, again.output
    (comparison,) = json.loads(again.stdout)["comparisons"]
    assert comparison["case"] == "Square" and comparison["before_s"] > 0


def test_a_figure_above_the_roofline_is_marked_not_claimed():
    from lossctl.render.roofline_table import fmt_percent
    from lossctl.roofline import Figures

    under = Figures(seconds=2.0, bytes=10, flops=0, roofline_s=1.0, bound="memory")
    over = Figures(seconds=1.0, bytes=10, flops=0, roofline_s=1.5, bound="memory")
    assert str(fmt_percent(under)) == "50%" and str(fmt_percent(over)) == "150%*"

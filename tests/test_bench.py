"""`lossctl bench`: run_bench's report and JSON, the table, --save/--compare, --plot, and its errors.

Structure and sanity only: nothing here asserts how fast anything is. Sizes are tiny and every
timing uses min_time 0.01 s. A noisy timing (IQR/median > 10%) keeps sampling until max_time
(5 s by default), and on a shared 2-core box many microsecond timings are noisy, so every test
caps it at 0.1 s (`--max-time 0.1`, or max_time=0.1). That only bounds how long a timing may sample.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.autograd import Function

from lossctl.bench import (
    NOISY,
    BenchCase,
    BenchOptions,
    BenchReport,
    Comparison,
    Fingerprint,
    Subject,
    Timing,
    parse_dims,
    parse_percent,
    run_bench,
)
from lossctl.errors import DeviceError, UsageError
from lossctl.render import Format
from lossctl.spec import load_specs
from lossctl.suite import Job, collect
from tests.conftest import REPO

FAST = {"min_time": 0.01, "max_time": 0.1}
MIN_TIME = ("--min-time", "0.01", "--max-time", "0.1")

CE_SPEC = """
function: lossctl.examples.cross_entropy.CrossEntropyLoss
reference: torch.nn.functional.cross_entropy
dims: {N: [8, 64], C: 5}
args:
  logits: {shape: [N, C]}
  target: {shape: [N], dtype: int64, high: C}
"""


def jobs_from(yaml_text: str) -> list[Job]:
    return [Job(spec) for spec in load_specs(textwrap.dedent(yaml_text).lstrip(), source="bench_test.yaml")]


@pytest.fixture(scope="module")
def swept_report() -> BenchReport:
    """CrossEntropyLoss against F.cross_entropy at N=8 and N=64: measured once for the module."""
    return run_bench(jobs_from(CE_SPEC), BenchOptions(device="cpu", **FAST))


def check_timing(timing: Timing | None) -> None:
    assert timing is not None
    assert timing.times, "no raw samples"
    assert all(t > 0 and math.isfinite(t) for t in timing.times)
    assert timing.number_per_run >= 1
    assert timing.median > 0
    assert timing.median == statistics.median(timing.times)
    assert min(timing.times) <= timing.median <= max(timing.times)
    if len(timing.times) >= 2:
        q1, _, q3 = statistics.quantiles(timing.times, n=4, method="inclusive")
        assert timing.iqr == pytest.approx(q3 - q1)
    assert 0 <= timing.iqr <= max(timing.times) - min(timing.times)
    assert timing.noisy == (timing.iqr / timing.median > NOISY)


def check_timing_dict(data: dict[str, Any]) -> None:
    assert set(data) == {"median_s", "iqr_s", "noisy", "number_per_run", "times_s"}
    times = data["times_s"]
    assert times and all(t > 0 for t in times)
    assert data["median_s"] == pytest.approx(statistics.median(times)) and data["median_s"] > 0
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
        assert data["iqr_s"] == pytest.approx(q3 - q1)
    assert data["noisy"] == (data["iqr_s"] / data["median_s"] > NOISY)


def check_subject(subject: Subject | None) -> None:
    assert subject is not None
    for timing in (subject.forward, subject.backward, subject.forward_backward):
        check_timing(timing)
    assert subject.peak_bytes is None or subject.peak_bytes >= 0
    assert subject.peak_method and (subject.peak_bytes is not None or subject.peak_method == "n/a")
    assert subject.saved_bytes is not None and subject.saved_bytes >= 0
    assert subject.saved_extra_bytes is not None and 0 <= subject.saved_extra_bytes <= subject.saved_bytes


# --------------------------------------------------------------------------- the core


def test_swept_report_with_a_reference_is_complete(swept_report):
    report = swept_report
    assert [c.case for c in report.cases] == ["CrossEntropyLoss[N=8]", "CrossEntropyLoss[N=64]"]
    assert not report.errors and report.comparisons == () and report.compared_with is None
    for case in report.cases:
        assert case.error is None and case.device == "cpu" and case.dtype == "float64"
        assert case.elements == case.dims["N"] * 5  # the floating input only, not the int64 target
        assert case.reference_name == "torch.nn.functional.cross_entropy"
        check_subject(case.function_result)
        check_subject(case.reference)
        fb = case.function_result.forward_backward
        assert case.throughput == pytest.approx(case.elements / fb.median)
        assert case.speedup == pytest.approx(case.reference.forward_backward.median / fb.median)
        assert case.speedup > 0
        assert case.memory_ratio is not None and case.memory_ratio > 0
        assert case.memory_ratio == pytest.approx(case.function_result.peak_bytes / case.reference.peak_bytes)
        assert case.function_result.peak_method == "cpu profiler, op-level (lower bound)"
        # log_softmax's output is saved beyond the inputs: N × C float64
        assert case.function_result.saved_extra_bytes >= case.elements * 8
    assert set(report.scaling) == {"CrossEntropyLoss"}
    assert math.isfinite(report.scaling["CrossEntropyLoss"])


def test_fingerprint_describes_the_run(swept_report):
    fp = swept_report.fingerprint
    assert fp.torch == torch.__version__
    assert fp.device == "cpu" and fp.device_name
    assert fp.threads == torch.get_num_threads()
    assert fp.dtype == "as in the specs"
    assert fp.python.count(".") == 2 and fp.platform


def test_report_json_is_complete_and_round_trips(swept_report):
    data = json.loads(json.dumps(swept_report.to_dict()))
    assert data["schema_version"] == 1
    assert set(data["fingerprint"]) == {"torch", "python", "platform", "device", "device_name", "threads", "dtype"}
    assert data["fingerprint"]["threads"] == torch.get_num_threads()
    assert math.isfinite(data["scaling"]["CrossEntropyLoss"])
    assert data["comparisons"] == [] and data["fingerprint_differences"] == []
    for case, original in zip(data["cases"], swept_report.cases, strict=True):
        for who in ("function_result", "reference"):
            subject = case[who]
            for key in ("forward", "backward", "forward_backward"):
                check_timing_dict(subject[key])
            assert subject["saved_bytes"] >= 0 and subject["peak_method"]
            assert subject["peak_bytes"] is None or subject["peak_bytes"] >= 0
        fb = case["function_result"]["forward_backward"]["median_s"]
        ref_fb = case["reference"]["forward_backward"]["median_s"]
        assert case["throughput_per_s"] == pytest.approx(case["elements"] / fb)
        assert case["speedup"] == pytest.approx(ref_fb / fb) and case["speedup"] > 0
        assert case["memory_ratio"] > 0
        assert case["dims"] == {"N": original.dims["N"], "C": 5}
        # what --compare reads back
        restored = BenchCase.from_dict(case)
        assert restored.key == original.key
        assert restored.function_result.forward_backward == original.function_result.forward_backward
        assert restored.speedup == pytest.approx(original.speedup)


def test_run_bench_never_prints_and_reports_progress(capfd):
    calls: list[tuple[str, int, int]] = []
    report = run_bench(
        jobs_from("function: tests.fns.Square\ndims: {N: 4, C: 3}\nargs: {x: {shape: [N, C]}}\n"),
        BenchOptions(device="cpu", **FAST),
        lambda label, done, total: calls.append((label, done, total)),
    )
    assert len(report.cases) == 1 and report.cases[0].error is None
    assert calls == [("Square", 0, 1), ("done", 1, 1)]
    out, err = capfd.readouterr()  # file descriptors too: the profiler's C++ side writes to fd 2
    assert out == "" and err == ""


def test_single_size_has_no_scaling_exponent():
    report = run_bench(
        jobs_from("function: tests.fns.Square\ndims: {N: 4, C: 3}\n"), BenchOptions(device="cpu", **FAST)
    )
    assert report.scaling == {}
    (case,) = report.cases
    assert case.reference is None and case.speedup is None and case.memory_ratio is None
    assert case.throughput == pytest.approx(12 / case.function_result.forward_backward.median)


def test_timing_statistics_from_known_samples():
    timing = Timing(times=(1.0, 2.0, 3.0, 4.0, 100.0), number_per_run=10)
    assert timing.median == 3.0 and timing.iqr == 2.0 and timing.noisy
    assert not Timing(times=(1.0, 1.01, 1.02), number_per_run=1).noisy
    assert Timing(times=(0.5,), number_per_run=1).iqr == 0.0
    assert Timing.from_dict(timing.to_dict()) == timing


def test_comparison_needs_both_the_percentage_and_the_noise_band():
    slower = Comparison(key="k", case="c", before_s=1.0, after_s=1.5, noise_s=0.1, slower_than=0.1)
    assert slower.change == pytest.approx(0.5) and slower.regressed
    inside_noise = Comparison(key="k", case="c", before_s=1.0, after_s=1.5, noise_s=0.6, slower_than=0.1)
    assert not inside_noise.regressed
    under_threshold = Comparison(key="k", case="c", before_s=1.0, after_s=1.05, noise_s=0.0, slower_than=0.1)
    assert not under_threshold.regressed
    assert not Comparison(key="k", case="c", before_s=1.0, after_s=9.0, noise_s=0.0, slower_than=None).regressed


def test_fingerprint_differences_name_the_field():
    base = Fingerprint("2.13.0", "3.11.7", "Linux", "cpu", "x86_64", 2, "as in the specs")
    other = Fingerprint("2.0.0", "3.11.7", "Linux", "cpu", "x86_64", 8, "as in the specs")
    assert base.differences(other) == ["torch: 2.0.0 then, 2.13.0 now", "threads: 8 then, 2 now"]
    assert base.differences(base) == []


def test_parse_dims_and_percent():
    assert parse_dims(["N=4,16", "C=3"]) == {"N": (4, 16), "C": (3,)}
    assert parse_dims(["N=4;C=7"]) == {"N": (4,), "C": (7,)}
    for bad in ("N=abc", "N=", "N=0", "=4", "N"):
        with pytest.raises(UsageError, match="--dims"):
            parse_dims([bad])
    assert parse_percent("10%") == pytest.approx(0.1) and parse_percent("2.5") == pytest.approx(0.025)
    assert parse_percent(None) is None
    for bad in ("ten%", "-5%"):
        with pytest.raises(UsageError, match="--fail-slower"):
            parse_percent(bad)


def test_core_raises_lossctl_errors_for_misuse():
    jobs = jobs_from("function: tests.fns.Square\ndims: {N: 4, C: 3}\n")
    with pytest.raises(UsageError, match="not a floating dtype"):
        run_bench(jobs, BenchOptions(device="cpu", dtype="int64", **FAST))
    with pytest.raises(DeviceError, match="unknown device `tpu`"):
        run_bench(jobs, BenchOptions(device="tpu", **FAST))


# --------------------------------------------------------------------------- dims, dtype, seed


class Recorder(Function):
    """x² that records the dtype and sum of the first input it sees (to observe --dtype and --seed)."""

    seen: list[tuple[torch.dtype, float]] = []  # noqa: RUF012

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        Recorder.seen.append((x.dtype, float(x.detach().double().sum())))
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


RECORDER_SPEC = "function: tests.test_bench.Recorder\ndims: {N: 4, C: 3}\nargs: {x: {shape: [N, C]}}\n"


def first_input_seen(**options: Any) -> tuple[torch.dtype, float]:
    Recorder.seen.clear()
    report = run_bench(jobs_from(RECORDER_SPEC), BenchOptions(device="cpu", **FAST, **options))
    assert not report.errors and Recorder.seen
    return Recorder.seen[0]


def test_seed_picks_the_inputs():
    dtype, first = first_input_seen(seed=1)
    assert dtype == torch.float64
    assert first_input_seen(seed=1)[1] == first
    assert first_input_seen(seed=2)[1] != first


def test_dtype_casts_floating_inputs():
    Recorder.seen.clear()
    report = run_bench(jobs_from(RECORDER_SPEC), BenchOptions(device="cpu", dtype="float32", **FAST))
    assert report.cases[0].dtype == "float32" and report.fingerprint.dtype == "float32"
    assert Recorder.seen and all(dtype == torch.float32 for dtype, _ in Recorder.seen)


def test_cli_dims_overrides_the_sweep(run_cli):
    result = run_cli("bench", "configs/cross_entropy.yaml", "--dims", "N=4,16", *MIN_TIME, "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [c["case"] for c in data["cases"]] == ["CrossEntropyLoss[N=4]", "CrossEntropyLoss[N=16]"]
    assert [c["dims"] for c in data["cases"]] == [{"N": 4, "C": 5}, {"N": 16, "C": 5}]
    assert [c["elements"] for c in data["cases"]] == [20, 80]
    assert math.isfinite(data["scaling"]["CrossEntropyLoss"])


def test_cli_dims_applies_to_default_inputs(run_cli):
    result = run_cli("bench", "tests.fns.Square", "--dims", "N=2,6", *MIN_TIME, "-f", "json")
    assert result.exit_code == 0, result.output
    cases = json.loads(result.stdout)["cases"]
    assert [c["case"] for c in cases] == ["Square[N=2]", "Square[N=6]"]
    assert all(c["dims"]["C"] == cases[0]["dims"]["C"] for c in cases)


def test_cli_dtype_and_seed(run_cli):
    result = run_cli(
        "bench", "configs/cross_entropy.yaml", "--dims", "N=8", "--dtype", "float32", "--seed", "3", *MIN_TIME, "-f",
        "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (case,) = data["cases"]
    assert case["dtype"] == "float32" and data["fingerprint"]["dtype"] == "float32"
    assert case["elements"] == 40 and case["error"] is None


# --------------------------------------------------------------------------- --save / --compare


SQUARE = ("bench", "tests.fns.Square", "--dims", "N=4,8", *MIN_TIME)


@pytest.fixture
def saved(run_cli, tmp_path) -> Path:
    path = tmp_path / "run.json"
    result = run_cli(*SQUARE, "--save", str(path))
    assert result.exit_code == 0, result.output
    return path


def edited(path: Path, tmp_path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(data))
    return out


def scale_times(factor: float):
    def edit(data: dict[str, Any]) -> None:
        for case in data["cases"]:
            for key in ("forward", "backward", "forward_backward"):
                timing = case["function_result"][key]
                timing["times_s"] = [t * factor for t in timing["times_s"]]

    return edit


def test_save_writes_what_compare_reads(run_cli, saved):
    data = json.loads(saved.read_text())
    assert data["schema_version"] == 1 and len(data["cases"]) == 2
    result = run_cli(*SQUARE, "--compare", str(saved), "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["compared_with"] == str(saved)
    assert report["fingerprint_differences"] == []
    rows = {c["case"]: c for c in report["comparisons"]}
    assert set(rows) == {"Square[N=4]", "Square[N=8]"}
    for case in data["cases"]:
        row = rows[case["case"]]
        assert row["key"] == f"tests.fns.Square|{case['case']}|float64"
        assert row["before_s"] == pytest.approx(case["function_result"]["forward_backward"]["median_s"])
        assert row["after_s"] > 0 and row["noise_s"] >= 0
        assert row["slower_than"] is None and row["regressed"] is False


def test_compare_table_and_fail_slower_pass(run_cli, saved, tmp_path):
    slower_before = edited(saved, tmp_path, scale_times(10))  # nothing can have regressed against this
    result = run_cli(*SQUARE, "--compare", str(slower_before), "--fail-slower", "10%")
    assert result.exit_code == 0, result.output
    assert "against" in result.stdout  # the title (with the path, which rich may wrap or fold)
    assert "SLOWER" not in result.stdout
    assert all(word in result.stdout for word in ("before", "after", "change", "noise band", "verdict"))
    assert "Square[N=4]" in result.stdout and "ok" in result.stdout


def test_fail_slower_trips_on_a_regression(run_cli, saved, tmp_path):
    faster_before = edited(saved, tmp_path, scale_times(1 / 100))
    # 100x slower than saved; a row counts as regressed only beyond its noise band too, and a
    # microsecond timing on a shared, loaded VM can be noisier than its median. So: up to three
    # runs, and a run where the gate stays open must owe that to the noise band, nothing else.
    for _ in range(3):
        as_json = run_cli(*SQUARE, "--compare", str(faster_before), "--fail-slower", "10%", "-f", "json")
        rows = json.loads(as_json.stdout)["comparisons"]
        assert len(rows) == 2 and all(r["change"] > 10 and r["slower_than"] == 0.1 for r in rows)
        if any(r["regressed"] for r in rows):
            assert as_json.exit_code == 1
            break
        assert as_json.exit_code == 0
        assert all(r["after_s"] - r["before_s"] <= r["noise_s"] for r in rows)
    else:
        pytest.fail("a 100x regression stayed inside the noise band in three runs")
    for _ in range(3):
        result = run_cli(*SQUARE, "--compare", str(faster_before), "--fail-slower", "10%")
        if result.exit_code == 1:
            break
    assert result.exit_code == 1, result.output
    assert "SLOWER" in result.stdout


def test_without_fail_slower_a_regression_does_not_fail(run_cli, saved, tmp_path):
    faster_before = edited(saved, tmp_path, scale_times(1 / 100))
    result = run_cli(*SQUARE, "--compare", str(faster_before))
    assert result.exit_code == 0, result.output
    assert "SLOWER" not in result.stdout


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("threads", 97, "threads: 97 then"), ("torch", "1.0.0", "torch: 1.0.0 then")],
)
def test_other_environment_is_a_loud_warning(run_cli, saved, tmp_path, field, value, named):
    other = edited(saved, tmp_path, lambda data: data["fingerprint"].update({field: value}))
    result = run_cli(*SQUARE, "--compare", str(other))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and named in result.stderr
    assert "WARNING: the saved run's environment differs" in result.stdout and named in result.stdout


def test_other_environment_in_json(run_cli, saved, tmp_path):
    other = edited(saved, tmp_path, lambda data: data["fingerprint"].update({"threads": 97}))
    result = run_cli(*SQUARE, "--compare", str(other), "-f", "json")
    assert result.exit_code == 0, result.output
    assert any(d.startswith("threads: 97 then") for d in json.loads(result.stdout)["fingerprint_differences"])


def test_other_environment_warns_on_stderr_in_json_mode(run_cli, saved, tmp_path):
    other = edited(saved, tmp_path, lambda data: data["fingerprint"].update({"threads": 97}))
    result = run_cli(*SQUARE, "--compare", str(other), "-f", "json")
    assert "threads: 97 then" in result.stderr


# --------------------------------------------------------------------------- errors


def check_usage_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "tpu"), "--device: unknown device `tpu`"),
        (("--dtype", "int64"), "--dtype: `int64` is not a floating dtype"),
        (("--dims", "N=abc"), "--dims: `N=abc` is not NAME=SIZE"),
        (("--dims", "N=0"), "--dims: `N=0` is not NAME=SIZE"),
        (("--fail-slower", "10%"), "--fail-slower needs --compare FILE.json"),
        (("--compare", "missing.json"), "--compare: no such file: missing.json"),
        (("--min-time", "0"), "--min-time must be positive"),
    ],
)
def test_usage_errors_exit_2(run_cli, args, message):
    check_usage_error(run_cli("bench", "tests.fns.Square", *MIN_TIME, *args), message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_exits_2(run_cli):
    result = run_cli("bench", "tests.fns.Square", "--device", "cuda", *MIN_TIME)
    check_usage_error(result, "--device cuda: CUDA is not available here")
    assert "use --device cpu" in result.stderr


def test_fail_slower_not_a_percentage(run_cli, saved):
    result = run_cli(*SQUARE, "--compare", str(saved), "--fail-slower", "lots")
    check_usage_error(result, "--fail-slower: `lots` is not a percentage")


def test_compare_with_a_check_report_exits_2(run_cli, tmp_path):
    check = run_cli("check", "tests.fns.Square", "--checks", "forward", "-f", "json")
    assert check.exit_code == 0
    path = tmp_path / "check.json"
    path.write_text(check.stdout)
    check_usage_error(
        run_cli("bench", "tests.fns.Square", *MIN_TIME, "--compare", str(path)), "not a lossctl bench --save file"
    )


def test_compare_with_other_json_exits_2(run_cli, tmp_path):
    for name, text in (("list.json", "[1, 2]"), ("other.json", '{"schema_version": 7}'), ("bad.json", "{nope")):
        path = tmp_path / name
        path.write_text(text)
        result = run_cli("bench", "tests.fns.Square", *MIN_TIME, "--compare", str(path))
        check_usage_error(result, "--compare: ")
        assert str(path) in result.stderr


def test_format_junit_is_refused(run_cli):
    if "junit" not in {f.value for f in Format}:
        pytest.skip("the Format enum has no junit")
    # bench lists only the formats it writes, so click refuses junit before anything runs
    check_usage_error(run_cli("bench", "tests.fns.Square", *MIN_TIME, "--format", "junit"), "'junit' is not one of")
    assert "junit" not in run_cli("bench", "-h").stdout


def test_function_raising_in_forward_is_an_error_row(run_cli, write_spec):
    spec = write_spec(
        """
        specs:
          - function: tests.fns.Square
          - function: tests.fns.RaisesInForward
        """
    )
    result = run_cli("bench", str(spec), *MIN_TIME)
    assert result.exit_code == 1, result.output
    assert "KeyError: 'forward exploded on purpose'" in result.stdout
    assert "RaisesInForward" in result.stdout and "Square" in result.stdout
    assert "Traceback" not in result.output
    verbose = run_cli("bench", str(spec), *MIN_TIME, "-v")
    assert "Traceback (most recent call last)" in verbose.stdout
    assert 'raise KeyError("forward exploded on purpose")' in verbose.stdout


def test_function_raising_in_forward_in_json(run_cli):
    result = run_cli("bench", "tests.fns.RaisesInForward", *MIN_TIME, "-f", "json")
    (case,) = json.loads(result.stdout)["cases"]
    assert re.fullmatch(r"KeyError: 'forward exploded on purpose' \(at fns\.py:\d+ in forward\)", case["error"])
    assert case["function_result"] is None and case["traceback"]


def test_core_turns_a_raising_forward_into_an_error_case():
    report = run_bench(jobs_from("function: tests.fns.RaisesInForward\n"), BenchOptions(device="cpu", **FAST))
    (case,) = report.cases
    assert report.errors == [case] and "forward exploded on purpose" in case.error


def test_function_raising_in_forward_alone_exits_1(run_cli):
    result = run_cli("bench", "tests.fns.RaisesInForward", *MIN_TIME)
    assert "KeyError: 'forward exploded on purpose'" in result.stdout
    assert result.exit_code == 1


def test_nothing_loadable_exits_2(run_cli):
    result = run_cli("bench", "tests.fns.Nope", *MIN_TIME)
    assert result.exit_code == 2
    assert "has no attribute `Nope`" in result.stdout


# --------------------------------------------------------------------------- --plot and the table


def test_plot_writes_a_png(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    result = run_cli("bench", "configs/cross_entropy.yaml", "--dims", "N=4,16", *MIN_TIME, "--plot", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_is_a_usage_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    out = tmp_path / "bench.png"
    result = run_cli("bench", "tests.fns.Square", *MIN_TIME, "--plot", str(out))
    check_usage_error(result, "--plot needs matplotlib")
    assert "lossctl[plot]" in result.stderr
    assert not out.exists()


def test_table_explains_its_numbers(run_cli, tmp_path):
    spec = tmp_path / "ce.yaml"
    spec.write_text(textwrap.dedent(CE_SPEC).lstrip())
    result = run_cli("bench", str(spec), *MIN_TIME)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for column in ("fwd", "bwd", "fwd+bwd ±IQR", "peak", "saved", "speedup", "mem"):
        assert column in out
    # the notes under the table: what the numbers are, the noise marker, speedup and mem
    assert "medians of torch.utils.benchmark.Timer samples (±IQR for fwd+bwd)" in out
    assert "~ marks IQR/median > 10%" in out
    assert "ref: torch.nn.functional.cross_entropy; speedup: ref fwd+bwd time / fn's; mem: fn peak / ref peak" in out
    assert "↳ reference" in out
    assert "CrossEntropyLoss[N=8]" in out and "CrossEntropyLoss[N=64]" in out
    assert "×" in out and "CrossEntropyLoss: time ∝ elements^" in out
    assert f"torch {torch.__version__} · cpu" in out and "· 1 thread ·" in out  # bench's stated default
    assert "CPU profiler, op-level: a lower bound" in out


def test_no_target_benches_the_configs_folder(run_cli):
    result = run_cli("bench", "--dims", "N=4", *MIN_TIME, "-f", "json")
    assert result.exit_code == 0, result.output
    functions = {c["function"] for c in json.loads(result.stdout)["cases"]}
    assert "lossctl.examples.focal.FocalLoss" in functions
    assert "lossctl.examples.cross_entropy.CrossEntropyLoss" in functions


def test_collect_feeds_run_bench():
    jobs = collect([str(REPO / "configs/focal.yaml")], configs_dir=REPO / "configs")
    report = run_bench(jobs, BenchOptions(device="cpu", **FAST))
    (case,) = report.cases
    assert case.case == "FocalLoss" and case.error is None and case.elements == 30


def test_dims_that_no_spec_has_are_an_error(run_cli):
    result = run_cli("bench", "tests.fns.Square", "--dims", "n=4", "--min-time", "0.01")
    assert result.exit_code == 2
    assert "--dims: no spec has a dim `n`" in result.stderr and "N" in result.stderr


def test_compare_with_a_check_report_fails_before_benchmarking(run_cli, tmp_path):
    report = tmp_path / "check.json"
    report.write_text('{"schema_version": 1, "ok": true, "cases": []}')
    result = run_cli("bench", "tests.fns.Square", "--compare", str(report), "--min-time", "5")
    assert result.exit_code == 2 and "not a lossctl bench --save file" in result.stderr

"""Hostile inputs and faults: each ends in its exit code with one clear message and no traceback from
lossctl; reports survive full disks, kill -9 and Ctrl-C; a fuzzer finds no traceback in the spec loader."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossctl.errors import SpecError
from lossctl.files import Stamp, write_atomic
from lossctl.spec import load_specs
from tests.conftest import CLI_ENV, REPO
from tests.reliability_cases import BAD_INPUTS, SQUARE, VALID_SPEC, BadInput
from tests.spec_fuzz import mutate

LOSSCTL_FRAME = re.compile(r'File ".*[/\\]lossctl[/\\](?!examples)')


def assert_clean(output: str) -> None:
    """No traceback through lossctl's own code, and no "internal error"."""
    assert not LOSSCTL_FRAME.search(output), output
    assert "internal error" not in output, output


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.id for bad in BAD_INPUTS])
def test_bad_input(bad: BadInput, run_cli, tmp_path: Path) -> None:
    argv = bad.materialize(tmp_path)
    started = time.monotonic()
    result = run_cli(*argv, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.exit_code == bad.exit_code, result.output
    # The report wraps long messages at the terminal's width: compare with whitespace folded.
    assert " ".join(bad.message.split()) in " ".join(result.output.split()), result.output
    assert_clean(result.output)
    if bad.exit_code == 2 and not bad.table_printed and "Invalid value" not in bad.message:
        if "error:" in result.stderr:  # one clear message, and nothing ran
            assert result.stderr.count("error:") == 1 and "passed" not in result.stdout, result.output
        else:  # an invalid spec or a Function that cannot load: one ERROR says why, and nothing ran
            summary = result.stdout.split("short summary")[-1]
            assert len(re.findall(r"^\s+ERROR ", summary, re.M)) == 1, result.output
            assert not re.search(r"checks: [1-9]\d* passed", result.stdout), result.output
    if bad.table_printed:
        assert "passed" in result.stdout or "fwd+bwd" in result.stdout, result.output
    if bad.kind == "yaml":
        assert elapsed < 1.0, f"{bad.id} took {elapsed:.2f} s"


def test_suite_size_and_kinds() -> None:
    assert len({bad.id for bad in BAD_INPUTS}) == len(BAD_INPUTS) >= 60
    assert {bad.kind for bad in BAD_INPUTS} == {"cli", "path", "yaml", "user code", "fault"}


def test_allow_large_lifts_the_memory_bound(run_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("lossctl.limits.MAX_INPUT_BYTES", 16)  # 3 float64 = 24 bytes: over it
    (tmp_path / "s.yaml").write_text(VALID_SPEC)
    refused = run_cli("check", str(tmp_path / "s.yaml"), "--checks", "forward", "-j", "0")
    assert refused.exit_code == 2 and "need 24 bytes (24 B), more than the 16 bytes" in refused.stderr
    assert "--allow-large" in refused.stderr
    allowed = run_cli("check", str(tmp_path / "s.yaml"), "--checks", "forward", "-j", "0", "--allow-large")
    assert allowed.exit_code == 0, allowed.output


def test_a_full_disk_keeps_the_previous_report(run_cli, tmp_path) -> None:
    """RLIMIT_FSIZE makes a write fail as a full disk does (EFBIG instead of ENOSPC)."""
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        result = run_cli("check", SQUARE, "--checks", "forward", "-j", "0", "-f", "json", "-o", str(report))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert result.exit_code == 2, result.output
    assert f"--output {report}: cannot write (File too large); any previous file is unchanged" in result.stderr
    assert "1 passed" in result.stdout  # the table is still printed
    assert report.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_reports_are_written_whole_and_readable(run_cli, tmp_path) -> None:
    report = tmp_path / "r.xml"
    report.write_text("old")
    result = run_cli("check", SQUARE, "--checks", "forward", "-j", "0", "-f", "junit", "-o", str(report))
    assert result.exit_code == 0, result.output
    assert report.read_text().startswith("<?xml") and oct(report.stat().st_mode & 0o777) != "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["r.xml"]


# --------------------------------------------------------------------------- signals and processes


def _lossctl(*args: str, mark: Path) -> subprocess.Popen:
    env = {**os.environ, **CLI_ENV, "LOSSCTL_TEST_MARK": str(mark), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "lossctl", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the test's signals reach lossctl only
    )


def _wait_for(path: Path, process: subprocess.Popen | None = None, seconds: float = 60) -> int:
    """The pid the hanging Function wrote once it started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        if process is not None and process.poll() is not None:
            raise AssertionError(f"lossctl ended early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the Function never started")


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            return True
        if state == "Z":  # dead, waiting to be reaped
            return True
        time.sleep(0.05)
    return False


def test_killing_lossctl_kills_its_worker_and_keeps_the_report(tmp_path) -> None:
    """kill -9 and SIGTERM (run side by side): the worker in a never-ending Function dies with
    lossctl, and the previous report is untouched."""
    runs = {}
    for sig in (signal.SIGKILL, signal.SIGTERM):
        report = tmp_path / f"{sig.name}.json"
        report.write_text('{"old": true}')
        mark = tmp_path / f"{sig.name}.mark"
        args = ("check", "tests.hostile.MarksThenHangs", "-j", "1", "--checks", "forward", "-f", "json")
        runs[sig] = (_lossctl(*args, "-o", str(report), mark=mark), mark, report)
    for sig, (process, mark, report) in runs.items():
        worker = _wait_for(mark, process)
        assert worker != process.pid
        os.kill(process.pid, sig)
        process.communicate(timeout=10)
        try:
            assert _gone(worker), f"the worker outlived lossctl after {sig.name}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        assert report.read_text() == '{"old": true}'


def _interrupt_when(mark: Path) -> threading.Thread:
    """Ctrl-C this (the test's) process once the hanging Function has started."""

    def watch() -> None:
        _wait_for(mark)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


TWO_CASES = (
    "specs:\n"
    "  - {name: first, function: tests.fns.Square, args: {x: {shape: [3]}}}\n"
    "  - {name: hangs, function: tests.hostile.MarksThenHangs, args: {x: {shape: [3]}}}\n"
)


def test_ctrl_c_during_check_writes_a_complete_report_that_says_interrupted(run_cli, tmp_path, monkeypatch) -> None:
    report, mark, spec = tmp_path / "r.json", tmp_path / "mark", tmp_path / "s.yaml"
    spec.write_text(TWO_CASES)
    monkeypatch.setenv("LOSSCTL_TEST_MARK", str(mark))
    watcher = _interrupt_when(mark)
    result = run_cli("check", str(spec), "-j", "0", "--checks", "forward", "-f", "json", "-o", str(report))
    watcher.join(5)
    assert result.exit_code == 130, result.output
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and [c["case"] for c in data["cases"]] == ["first"]
    assert result.stdout.splitlines()[-1].startswith("INTERRUPTED")
    assert_clean(result.output)


def test_ctrl_c_during_bench_saves_and_prints_what_finished(run_cli, tmp_path, monkeypatch) -> None:
    saved, mark, spec = tmp_path / "b.json", tmp_path / "mark", tmp_path / "s.yaml"
    spec.write_text(TWO_CASES)
    monkeypatch.setenv("LOSSCTL_TEST_MARK", str(mark))
    watcher = _interrupt_when(mark)
    result = run_cli("bench", str(spec), "--min-time", "0.01", "--max-time", "0.02", "--save", str(saved))
    watcher.join(5)
    assert result.exit_code == 130, result.output
    data = json.loads(saved.read_text())
    assert data["interrupted"] is True and [c["case"] for c in data["cases"]] == ["first"]
    assert "first" in result.stdout and "saved 1 case" in result.stderr and "interrupted" in result.stderr
    assert_clean(result.output)


def test_concurrent_writers_leave_one_whole_file(tmp_path) -> None:
    """Two runs writing one --output: each writes a unique temp file and renames it, so the file is
    always one whole report; the later writer is told it replaced the other's."""
    path = tmp_path / "r.json"
    versions = {f"writer-{n}": json.dumps({"writer": n, "pad": "x" * 200_000}) for n in range(4)}
    seen: set[str] = set()
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(20):
                write_atomic(path, text, "--output")
                seen.add(path.read_text())
        except BaseException as error:  # reported below: a thread's failure must fail the test
            errors.append(error)

    threads = [threading.Thread(target=write, args=(text,)) for text in versions.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert seen <= set(versions.values()) and path.read_text() in versions.values()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    before = Stamp.of(path)
    write_atomic(path, "{}", "--output")  # another run
    assert write_atomic(path, "{}", "--output", before=before) is True
    assert write_atomic(path, "{}", "--output", before=Stamp.of(path)) is False


# --------------------------------------------------------------------------- fuzzing the spec loader

FUZZ_COUNTS = {"specs": 0, "refused": 0}
"""Read by a session-end check below: the fuzzer really ran its specs."""


@settings(max_examples=2000, deadline=500, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(st.integers(0, 2**64 - 1))
def test_fuzzed_specs_load_or_fail_with_a_spec_error(seed: int) -> None:
    """One drawn seed per spec (hypothesis's own draws per mutation cost 5x the loading)."""
    text = mutate(random.Random(seed))
    FUZZ_COUNTS["specs"] += 1
    try:
        load_specs(text, source="fuzz.yaml")
    except SpecError as error:
        FUZZ_COUNTS["refused"] += 1
        assert error.message.startswith("fuzz.yaml")


def test_fuzzer_ran_and_found_both_outcomes() -> None:
    """Runs after the fuzzer (file order): it tried 2,000 specs, and they were neither all refused
    nor all accepted (mutations that never parse would test nothing)."""
    if FUZZ_COUNTS["specs"] == 0:
        pytest.skip("the fuzzer was deselected")
    assert FUZZ_COUNTS["specs"] >= 2000
    assert 0 < FUZZ_COUNTS["refused"] < FUZZ_COUNTS["specs"]


@pytest.mark.parametrize("command", ["check", "bench"])
def test_a_billion_laughs_is_refused_before_torch_is_imported(tmp_path, command) -> None:
    """The whole refusal costs YAML parsing only: no torch import, well under a second of work."""
    from tests.reliability_cases import _bomb

    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb(False))
    probe = (
        f"import sys\nfrom lossctl.cli import main\nsys.argv = ['lossctl', '{command}', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    print('torch' in sys.modules, done.code)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", probe, str(spec)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.stdout.splitlines()[-1].split() == ["False", "2"], done
    assert "expands to more than 100,000 nodes" in " ".join((done.stdout + done.stderr).split())
    assert time.monotonic() - started < 10  # generous: a loaded CI machine; typically 0.6 s


def test_plot_without_matplotlib_is_refused_before_running(run_cli, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = run_cli("bench", SQUARE, "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2 and "--plot needs matplotlib" in result.stderr
    assert_clean(result.output)


def test_an_in_process_timeout_off_the_main_thread_is_refused() -> None:
    from lossctl.errors import UsageError
    from lossctl.flags import validate_in_process_timeout

    caught: list[BaseException] = []

    def run() -> None:
        try:
            validate_in_process_timeout(0, timeout_given=True)
        except UsageError as error:
            caught.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert caught and "cannot be enforced with -j 0" in str(caught[0])
    validate_in_process_timeout(0, timeout_given=True)  # the main thread can: no error
    validate_in_process_timeout(1, timeout_given=True)

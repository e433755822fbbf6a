"""Worker processes: a crashing, hanging or failing Function is one row, and the rest still run."""

from __future__ import annotations

import json
import re

import pytest

from lossctl.runner import RunOptions, Task, plan_tasks, run_checks, shard_tasks
from lossctl.spec import load_spec_file
from lossctl.suite import Job
from tests.conftest import REPO


def test_crashing_hanging_and_failing_functions_are_all_reported(run_cli):
    result = run_cli(
        "check",
        "tests/suites/crashing.yaml",
        "-j",
        "2",
        "--timeout",
        "4",
        "--checks",
        "forward,backward,gradcheck",
        "--format",
        "json",
    )
    assert result.exit_code == 1
    cases = {c["case"]: c for c in json.loads(result.stdout)["cases"]}
    assert list(cases) == ["passes", "aborts", "hangs", "fails"]  # in spec order
    assert {c["status"] for c in cases["passes"]["checks"]} == {"passed"}
    (aborted,) = cases["aborts"]["checks"]
    assert aborted["check"] == "run" and aborted["status"] == "error"
    assert "SIGABRT (signal 6)" in aborted["detail"]
    (hung,) = cases["hangs"]["checks"]
    assert hung["status"] == "error" and "timed out after 4 s" in hung["detail"]
    assert 4000 <= hung["duration_ms"] < 20000
    gradcheck = next(c for c in cases["fails"]["checks"] if c["check"] == "gradcheck")
    assert gradcheck["status"] == "failed" and gradcheck["hint"].startswith("sign is flipped (backward at ")


def test_segfault_exit_and_oom_are_named(write_spec):
    spec = write_spec(
        """
        specs:
          - {name: segv, function: tests.crashers.Segfaults, args: {x: {shape: [3]}}}
          - {name: exits, function: tests.crashers.ExitsTheProcess, args: {x: {shape: [3]}}}
          - {name: oom, function: tests.crashers.AllocatesTooMuch, args: {x: {shape: [3]}}}
          - {name: ok, function: tests.fns.Square, args: {x: {shape: [3]}}}
        """
    )
    jobs = [Job(s) for s in load_spec_file(spec)]
    report = run_checks(jobs, RunOptions(device="cpu", checks=("forward",), jobs=2, timeout=30))
    details = {c.case: c.checks[0].detail for c in report.cases}
    assert "SIGSEGV (signal 11), a segmentation fault" in details["segv"]
    assert "exited with code 3" in details["exits"]
    assert details["oom"].startswith("forward raised out of memory — RuntimeError")
    assert report.cases[3].checks[0].status.value == "passed"


def test_isolated_and_in_process_runs_agree():
    jobs = [Job(s) for s in load_spec_file(REPO / "configs" / "cross_entropy.yaml")]
    options = RunOptions(device="cpu", checks=("forward", "backward", "gradcheck", "linearity"))
    local = run_checks(jobs, options)
    isolated = run_checks(jobs, RunOptions(**{**options.__dict__, "jobs": 2}))
    strip = lambda r: [(c.case, [(x.check, x.status, x.detail) for x in c.checks]) for c in r.cases]  # noqa: E731
    assert strip(local) == strip(isolated)


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_cover_every_case_exactly_once(shards):
    jobs = [Job(s) for s in load_spec_file(REPO / "tests" / "suites" / "twenty.yaml")]
    tasks = plan_tasks(jobs)
    assert len(tasks) == 24
    seen: list[Task] = []
    sizes = []
    for k in range(1, shards + 1):
        part = shard_tasks(tasks, (k, shards))
        seen.extend(part)
        sizes.append(len(part))
    assert sorted(map(id, seen)) == sorted(map(id, tasks))
    assert max(sizes) - min(sizes) <= 1


def test_shard_flag(run_cli):
    counts = []
    for k in (1, 2, 3):
        result = run_cli(
            "check",
            "tests/suites/twenty.yaml",
            "--shard",
            f"{k}/3",
            "-j",
            "0",
            "--checks",
            "forward",
            "--format",
            "json",
        )
        assert result.exit_code == 0
        counts.append(len(json.loads(result.stdout)["cases"]))
    assert counts == [8, 8, 8]
    bad = run_cli("check", "tests/suites/twenty.yaml", "--shard", "4/3")
    assert bad.exit_code == 2 and "--shard: `4/3`" in bad.stderr


def test_empty_shard_is_nothing_to_check(run_cli):
    result = run_cli("check", "tests.fns.Square", "--shard", "2/2", "-j", "0")
    assert result.exit_code == 0
    assert "nothing to check" in result.stderr


def test_bad_jobs_and_timeout(run_cli):
    assert run_cli("check", "tests.fns.Square", "-j", "many").exit_code == 2
    assert run_cli("check", "tests.fns.Square", "--timeout", "0").exit_code == 2


def test_a_timeout_names_the_check_it_cut_short_and_what_had_finished(run_cli):
    result = run_cli(
        "check",
        "tests.crashers.HangsInHalf",
        "-j",
        "1",
        "--timeout",
        "3",
        "--checks",
        "forward,backward,gradcheck,low_precision",
        "--format",
        "json",
    )
    assert result.exit_code == 1
    (case,) = json.loads(result.stdout)["cases"]
    *finished, row = case["checks"]
    assert [(r["check"], r["status"]) for r in finished] == [
        ("forward", "passed"),
        ("backward", "passed"),
        ("gradcheck", "passed"),
    ]
    assert row["check"] == "low_precision" and row["status"] == "error"
    assert row["detail"].startswith("timed out after 3 s in `low_precision` (")
    assert "s in the case; finished: forward, backward, gradcheck): no call into the Function returned" in row["detail"]
    where = r": it is in forward, at tests/crashers\.py:\d+ in `forward`, after \d+ calls in `low_precision` \("
    assert re.search(where, row["detail"])
    assert row["detail"].endswith(" each): the Function hangs there")

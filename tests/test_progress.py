"""Honest timeouts and progress: a timeout names the check, the time and what finished, and tells a
Function that hangs from a case that needs more time; on a terminal a live line shows each running case."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from lossctl import activity
from lossctl.activity import Activity, CheckStarted, Where
from lossctl.render.live import LiveStatus, status_lines
from lossctl.runner import RunOptions, run_checks
from lossctl.spec import load_spec_file
from lossctl.suite import Job
from lossctl.watchdog import timeout_message
from tests.conftest import CLI_ENV, REPO

# ------------------------------------------------------------------ the message (pure)


def _seen(calls: int, last_return: float | None, event: int = activity.FORWARD_RETURNED) -> Activity:
    at = last_return if last_return is not None else 100.0
    return Activity(calls, last_return, event, at, check_started=100.0)


IN_BACKWARD = Where("backward", "losses.py:42 in `backward`")


def test_calls_returning_up_to_the_limit_mean_the_case_needs_more_time():
    seen = _seen(812, last_return=109.7)
    message = timeout_message(10, "gradcheck", 10.0, 12.5, ["forward", "backward"], seen, IN_BACKWARD, now=110.0)
    assert message == (
        "timed out after 10 s in `gradcheck` (10.0 s in it, 12.5 s in the case; finished: forward, backward): "
        "was making progress: 812 calls into the Function in `gradcheck`, the last 300 ms before the limit: "
        "the case needs more time — raise --timeout, or lower --budget"
    )


HEDGE = "the Function hangs there, or that call takes longer than that — raise --timeout to tell"


def test_slow_calls_that_keep_returning_are_progress_too():
    """Calls of 20 s each, the last 25 s before the limit: within 3 of its own intervals."""
    message = timeout_message(90, "linearity", 85.0, 90.0, [], _seen(3, 160.0), IN_BACKWARD, now=185.0)
    assert "was making progress: 3 calls" in message


def test_a_short_limit_still_tells_a_hang_from_progress():
    """A hang at a 1 s limit is silent for nearly all of it: not progress, however short the limit."""
    hang = timeout_message(1, "backward", 1.0, 1.0, [], _seen(1, 100.002), IN_BACKWARD, now=101.0)
    assert "the Function hangs there" in hang
    steady = timeout_message(1, "gradcheck", 1.0, 1.0, [], _seen(200, 100.95), IN_BACKWARD, now=101.0)
    assert "was making progress: 200 calls" in steady  # 50 ms of silence: a busy machine, not a hang


def test_nothing_returning_names_where_the_function_hangs():
    seen = _seen(1, last_return=100.01)
    message = timeout_message(30, "backward", 30.0, 31.0, ["forward"], seen, IN_BACKWARD, now=130.0)
    assert message == (
        "timed out after 30 s in `backward` (30.0 s in it, 31.0 s in the case; finished: forward): no call into "
        "the Function returned in the last 30.0 s: it is in backward, at losses.py:42 in `backward`, after 1 call "
        "in `backward` (forward returned in 10 ms): the Function hangs there, or that call takes longer than that "
        "— raise --timeout to tell"
    )
    many = timeout_message(30, "linearity", 30.0, 31.0, [], _seen(40, 102.0), IN_BACKWARD, now=130.0)
    # only forward calls are timed: stuck in backward, a hang and one slow backward look alike
    assert many.endswith(f"after 40 calls in `linearity` (forward 50 ms each): {HEDGE}")


def test_a_first_call_that_never_returns_may_be_a_hang_or_one_slow_call():
    seen = _seen(0, None, activity.IN_FORWARD)
    message = timeout_message(5, "forward", 5.0, 5.0, [], seen, Where("forward", "f.py:3 in `forward`"), now=105.0)
    assert "no check had finished" in message
    assert message.endswith(
        "no call into the Function returned in the last 5.0 s: it is in forward, at f.py:3 in `forward`, and none "
        "had in `forward`: the Function hangs there, or one call takes longer than that — raise --timeout to tell"
    )


def test_a_worker_stuck_in_native_code_says_so():
    message = timeout_message(5, "gradcheck", 5.0, 5.0, [], _seen(4, 100.1), activity.NATIVE, now=105.0)
    assert "it is inside native code that does not return to Python (the worker did not answer), after 4" in message
    assert message.endswith(HEDGE)


def test_time_spent_in_the_checks_own_code_is_not_a_hang():
    where = Where("check", "torch/autograd/gradcheck.py:900 in `_allclose_with_type_promotion`")
    message = timeout_message(60, "gradcheck", 60.0, 61.0, [], _seen(80, 101.0), where, now=160.0)
    assert message.endswith(
        "no call into the Function returned in the last 59.0 s, after 80 calls in `gradcheck`: the time went to the "
        "check's own work (torch/autograd/gradcheck.py:900 in `_allclose_with_type_promotion`): the case needs "
        "more time — raise --timeout, or lower --budget"
    )


def test_without_a_stack_to_read_the_record_says_what_it_can():
    in_forward = timeout_message(5, "linearity", 5.0, 5.0, [], _seen(9, 100.1, activity.IN_FORWARD), None, now=105.0)
    assert "it is in forward, after 9 calls in `linearity`" in in_forward
    after = timeout_message(5, "linearity", 5.0, 5.0, [], _seen(9, 100.1), None, now=105.0)
    assert after.endswith("it hangs in backward, or the check's own work needs more time — raise --timeout")


def test_a_timeout_before_the_first_check_blames_loading_and_building():
    message = timeout_message(5, None, 5.0, 5.0, [], None, None, now=105.0)
    assert message.startswith("timed out after 5 s before its first check, while loading the Function")


# ------------------------------------------------------------------ the activity record and the stack


def test_activity_counts_calls_into_the_function():
    import torch

    from tests.progress_fns import SlowButSteady

    before = activity.current()
    activity.use(activity.new_slots())
    try:
        activity.begin_check(now=0.0)
        x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        activity.call(SlowButSteady.apply, [x], {})
        with pytest.raises(TypeError):
            activity.call(SlowButSteady.apply, [], {})  # raised: returned all the same
        seen = activity.read()
        assert (seen.forward_returns, seen.last_event) == (2, activity.FORWARD_RETURNED)
        assert seen.last_return is not None and seen.last_return > 0
        activity.begin_check()
        assert activity.read().forward_returns == 0 and activity.read().last_return is None
    finally:
        activity.use(before)


def test_the_stack_says_forward_or_backward_and_where():
    import sys

    import torch

    seen: list[Where | None] = []

    class Spy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(activity.locate(sys._getframe()))
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            seen.append(activity.locate(sys._getframe()))
            return grad

    x = torch.ones(2, requires_grad=True)
    torch.autograd.grad(Spy.apply(x).sum(), [x])
    forward, backward = seen
    assert forward is not None and backward is not None
    assert (forward.phase, backward.phase) == ("forward", "backward")
    assert re.fullmatch(r"tests/test_progress\.py:\d+ in `backward`", backward.place), backward.place
    assert Where.decode(backward.encode()) == backward


# ------------------------------------------------------------------ timeouts, in a worker and in-process


def _run(write_spec, function: str, shape: str, jobs: int, timeout: float):
    spec = write_spec(f"function: {function}\nargs: {{x: {{shape: {shape}}}}}\n")
    options = RunOptions(device="cpu", checks=("forward", "backward", "gradcheck"), jobs=jobs, timeout=timeout)
    (case,) = run_checks([Job(s) for s in load_spec_file(spec)], options).cases
    return case.checks


@pytest.mark.parametrize("jobs", [1, 0], ids=["worker", "in-process"])
def test_a_function_that_hangs_in_backward_is_named_a_hang(write_spec, jobs):
    limit = 1.5 if jobs else 1.0  # a worker's start-up counts against its case's limit
    forward, row = _run(write_spec, "tests.progress_fns.HangsInBackward", "[3]", jobs, timeout=limit)
    assert (forward.check, forward.status.value) == ("forward", "passed")  # the finished check's row is kept
    assert (row.check, row.status.value) == ("backward", "error")
    assert row.detail.startswith(f"timed out after {limit:g} s in `backward` (")
    assert "s in the case; finished: forward): no call into the Function returned in the last" in row.detail
    assert re.search(
        r"s: it is in backward, at tests/progress_fns\.py:\d+ in `backward`, after 1 call in `backward`", row.detail
    )
    assert row.detail.endswith(HEDGE)
    assert limit * 1e3 <= forward.duration_ms + row.duration_ms < limit * 1e3 + 3000  # they add up to the case


@pytest.mark.parametrize("jobs", [1, 0], ids=["worker", "in-process"])
def test_a_slow_function_that_keeps_returning_needs_more_time(write_spec, jobs):
    limit = 2.5 if jobs else 1.5
    *finished, row = _run(write_spec, "tests.progress_fns.SlowButSteady", "[25, 25]", jobs, timeout=limit)
    assert [(r.check, r.status.value) for r in finished] == [("forward", "passed"), ("backward", "passed")]
    assert (row.check, row.status.value) == ("gradcheck", "error")
    assert "finished: forward, backward): was making progress: " in row.detail
    calls = int(re.search(r"progress: (\d+) calls into the Function in `gradcheck`", row.detail).group(1))
    assert calls > 50  # 4 ms each: hundreds in the time left
    assert row.detail.endswith("before the limit: the case needs more time — raise --timeout, or lower --budget")


# ------------------------------------------------------------------ the live line


def _step(case: str, check: str, case_started: float, budget: float = 60) -> CheckStarted:
    return CheckStarted(case, check, budget, case_started, case_started + 1)


def test_status_lines_show_each_running_case_its_check_and_its_time_against_the_budget():
    assert status_lines([], 0, now=10.0) == ["checking…"]
    one = _step("CE[N=64]", "gradcheck", case_started=2.0)
    assert status_lines([one], 0, now=14.3) == ["checking… CE[N=64] · gradcheck · 12 s / 60 s budget"]
    assert status_lines([one], 3, now=2.25) == ["checking… 3 cases done · CE[N=64] · gradcheck · 0.2 s / 60 s budget"]
    two = _step("Focal", "linearity", case_started=1.0, budget=30)
    assert status_lines([one, two], 1, now=4.0) == [
        "checking… 1 case done",
        "  Focal · linearity · 3.0 s / 30 s budget",
        "  CE[N=64] · gradcheck · 2.0 s / 60 s budget",
    ]


def test_live_status_follows_the_runners_callbacks():
    live = LiveStatus()
    live.started(_step("a", "forward", 0.0))
    live.started(_step("b", "forward", 0.5))
    live.started(_step("a", "gradcheck", 0.0))  # a's next check replaces its line
    assert live.lines(now=2.0) == [
        "checking…",
        "  a · gradcheck · 2.0 s / 60 s budget",
        "  b · forward · 1.5 s / 60 s budget",
    ]
    live.finished("b", object())  # from a worker: b's whole case is done
    assert live.lines(now=2.0) == ["checking… 1 case done · a · gradcheck · 2.0 s / 60 s budget"]


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_on_a_terminal_the_live_line_moves_while_a_check_runs(write_spec, monkeypatch, jobs):
    from lossctl.cli import app

    spec = write_spec("function: tests.progress_fns.SlowButSteady\nargs: {x: {shape: [8, 8]}}\n")
    monkeypatch.chdir(REPO)
    args = ["check", str(spec), "-j", jobs, "--checks", "forward,backward,gradcheck"]
    result = CliRunner().invoke(app, args, env=TERMINAL, catch_exceptions=False)
    assert result.exit_code == 0
    shown = re.findall(
        r"checking… (?:\d+ cases? done · )?SlowButSteady · gradcheck · (\d+\.\d) s / 60 s budget", result.stderr
    )
    assert len(set(shown)) >= 2, result.stderr  # redrawn with a new elapsed time while gradcheck ran
    assert "budget" not in result.stdout and "1 passed" in result.stdout


TERMINAL = {**CLI_ENV, "TTY_COMPATIBLE": "1", "TERM": "xterm"}


def test_no_live_line_when_stderr_is_not_a_terminal_or_the_report_is_not_a_table(run_cli, monkeypatch):
    from lossctl.cli import app

    args = ["check", "tests.progress_fns.SlowButSteady", "-j", "0", "--checks", "forward"]
    piped = run_cli(*args)
    assert piped.exit_code == 0 and "checking…" not in piped.stderr
    monkeypatch.chdir(REPO)
    as_json = CliRunner().invoke(app, [*args, "--format", "json"], env=TERMINAL, catch_exceptions=False)
    assert as_json.exit_code == 0 and "checking…" not in as_json.stderr
    assert json.loads(as_json.stdout)["cases"][0]["checks"][0]["status"] == "passed"

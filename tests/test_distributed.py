"""Distributed losses on real gloo ranks: the spec keys, correct and broken examples, faults and
cleanup. The rank processes are real (spawned from a fork server), so runs are batched: one CLI
run per group of cases."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lossctl.distributed import CHECK_IDS
from lossctl.distributed.pool import describe_stack
from lossctl.errors import SpecError
from lossctl.spec import load_specs
from tests.conftest import CLI_ENV, REPO

DIST_CHECKS = ",".join(CHECK_IDS)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run lossctl in-process with the rank pool's pids recorded and its temp folder in a tmp dir."""
    import lossctl.distributed.runner as runner_module
    from lossctl.cli import app
    from lossctl.distributed.pool import RankPool

    folder = tmp_path_factory.mktemp("ranks-tmp")
    started: list[int] = []

    class Recording(RankPool):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            started.extend(self.pids)

    def run(*args: str) -> tuple[int, dict[str, Any], str, float]:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(REPO)
            patch.setattr(runner_module, "RankPool", Recording)
            patch.setattr(tempfile, "tempdir", str(folder))
            begin = time.monotonic()
            result = CliRunner().invoke(app, [*args, "-f", "json"], env=CLI_ENV, catch_exceptions=False)
            elapsed = time.monotonic() - begin
        data = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
        return result.exit_code, data, result.stderr, elapsed

    run.started = started  # type: ignore[attr-defined]
    run.folder = folder  # type: ignore[attr-defined]
    return run


def rows(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(case["case"], check["check"]): check for case in data["cases"] for check in case["checks"]}


@pytest.fixture(scope="module")
def examples(watched: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The bundled examples, correct and broken, at W=2 and W=4: distributed checks only."""
    code, data, stderr, _ = watched(
        "check",
        "configs/distributed/clip.yaml",
        "configs/distributed/masked_mse.yaml",
        "configs/distributed/vocab_parallel.yaml",
        "configs/distributed/broken/clip.yaml",
        "configs/distributed/broken/masked_mse.yaml",
        "--checks",
        DIST_CHECKS,
    )
    assert code == 1, stderr
    return rows(data)


@pytest.mark.parametrize("case", ["clip_loss", "masked_mse", "VocabParallelCrossEntropy"])
@pytest.mark.parametrize("world", [2, 4])
def test_correct_examples_pass_at_two_and_four_ranks(examples, case, world):
    for check in CHECK_IDS:
        row = examples[(f"{case}[W={world}]", check)]
        expected = "skipped" if (check == "dist_world_sizes" and world == 2) else "passed"
        assert row["status"] == expected, (check, row["detail"])
    assert "match W=2" in examples[(f"{case}[W=4]", "dist_world_sizes")]["detail"]


def test_a_gather_without_autograd_misses_the_other_ranks_contributions(examples):
    row = examples[("clip_no_grad_gather[W=4]", "dist_gradient")]
    assert row["status"] == "failed"
    assert (
        "every rank's gradient for `image` is missing the other ranks' contributions (equals its local-only part)"
        in row["detail"]
    )
    assert "torch.distributed.nn.functional.all_gather" in row["hint"]
    assert examples[("clip_no_grad_gather[W=4]", "dist_forward")]["status"] == "passed"  # forward is right
    assert examples[("clip_no_grad_gather[W=4]", "dist_reference")]["status"] == "failed"


def test_a_loss_summed_over_ranks_is_w_times_too_large(examples):
    forward = examples[("clip_summed[W=4]", "dist_forward")]
    assert forward["status"] == "failed"
    assert forward["detail"] == "the global loss is W=4× the single-process loss"
    reference = examples[("clip_summed[W=4]", "dist_reference")]
    assert "every rank's gradient for `image` is W=4× too large" in reference["detail"]
    assert examples[("clip_summed[W=4]", "dist_gradient")]["status"] == "passed"  # consistent with its forward


def test_a_local_count_shows_in_the_global_loss(examples):
    row = examples[("masked_mse_local_count[W=4]", "dist_forward")]
    assert row["status"] == "failed"
    assert row["detail"].endswith("× (≈ W=4) the single-process loss")
    assert "a local count" in row["hint"]


def test_faults_are_one_error_row_each_and_every_rank_is_cleaned_up(watched, write_spec):
    spec = write_spec(
        """
        specs:
          - name: raises
            function: tests.distributed_fns.raises_on_rank_1
            world_size: 2
            args: {x: {shape: [4, 3], shard: 0}}
          - name: dies
            function: tests.distributed_fns.dies_on_rank_1
            world_size: 2
            args: {x: {shape: [4, 3], shard: 0}}
          - name: hangs
            function: lossctl.examples.distributed.hanging_rank_loss
            world_size: 4
            args:
              pred: {shape: [8, 3], shard: 0}
              target: {shape: [8, 3], shard: 0, requires_grad: false}
        """
    )
    before = len(watched.started)
    code, data, stderr, elapsed = watched("check", str(spec), "--checks", DIST_CHECKS, "--timeout", "3")
    assert code == 1, stderr
    found = rows(data)
    raised = found[("raises[W=2]", "run")]
    assert raised["status"] == "error"
    assert raised["detail"].startswith("rank 1 raised ValueError: boom on rank 1")
    assert "while running forward and backward (rank 0 was stopped)" in raised["detail"]
    assert "boom on rank 1" in raised["traceback"]
    died = found[("dies[W=2]", "run")]["detail"]
    assert died.startswith("rank 1 died (exit code 3") and "while running forward and backward" in died
    hung = found[("hangs[W=4]", "run")]["detail"]
    assert hung.startswith("no answer within 3 s (--timeout) while running forward and backward")
    assert "ranks 0, 1, 2 wait in all_reduce (called at distributed.py" in hung
    assert "rank 3 had finished: it skipped a collective the others called" in hung
    assert found[("hangs[W=4]", "run")]["duration_ms"] < 8000
    assert elapsed < 30
    started = watched.started[before:]
    assert len(started) >= 3  # each fault replaced the pool
    assert_gone(started)
    assert not list(Path(watched.folder).glob("lossctl-ranks-*"))  # rendezvous files removed


def assert_gone(pids: list[int]) -> None:
    """Every rank process has exited and been reaped (its sockets closed with it)."""
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name.startswith("lossctl-rank-")]
    deadline = time.monotonic() + 5
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _exists(pid)]
        time.sleep(0.05)
    assert not alive, f"rank processes still running: {alive}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_single_process_battery_runs_at_w1_and_cleans_up(watched):
    before = len(watched.started)
    code, data, stderr, _ = watched(
        "check",
        "configs/distributed/vocab_parallel.yaml",
        "--checks",
        "forward,gradcheck,dist_forward",
        "--world-size",
        "4",
    )
    assert code == 0, stderr
    found = rows(data)
    assert found[("VocabParallelCrossEntropy[W=1]", "gradcheck")]["status"] == "passed"
    assert found[("VocabParallelCrossEntropy[W=4]", "dist_forward")]["status"] == "passed"
    assert ("VocabParallelCrossEntropy[W=2]", "dist_forward") not in found  # --world-size replaced [2, 4]
    assert {check for case, check in found if case.endswith("[W=4]")} == {"dist_forward"}
    assert_gone(watched.started[before:])


def test_a_sharded_dim_that_does_not_divide_is_a_spec_error(watched):
    message = r"args\.image\.shard: dim 0 has size 6 \(B\), which does not divide by world_size 4"
    with pytest.raises(SpecError, match=message):
        load_specs(
            "function: f\nworld_size: [2, 4]\ndims: {B: 6}\nargs: {image: {shape: [B, 3], shard: 0}}\n",
            source="s.yaml",
        )
    code, _, stderr, _ = watched("check", "configs/distributed/clip.yaml", "--world-size", "3")
    assert code == 2
    assert "dim 0 has size 8, which does not divide by world_size 3" in stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("world_size: [2, 2]\n", "a size appears twice"),
        ("world_size: 0\n", "expected an integer >= 1"),
        ("world_size: 2\ncombine: max\n", "combine: expected one of mean, sum, cat"),
        ("combine: sum\n", "combine: given without `world_size:`"),
        ("args: {x: {shape: [4], shard: 0}}\n", "args.x.shard: given without `world_size:`"),
        ("world_size: 2\nargs: {x: {shape: [4], shard: 1}}\n", "dim 1 does not exist"),
    ],
)
def test_distributed_keys_are_validated(text, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_specs("function: f\n" + text, source="s.yaml")


def test_spec_keys_round_trip():
    from lossctl.spec import spec_to_dict

    (spec,) = load_specs(
        "function: f\nworld_size: [2, 4]\ncombine: sum\ndims: {N: 8}\nargs: {x: {shape: [N], shard: 0}}\n"
    )
    import yaml

    (again,) = load_specs(yaml.safe_dump(spec_to_dict(spec)))
    assert again.world_size == (2, 4) and again.combine == "sum" and again.args["x"].shard == 0


def test_stacks_name_the_collective_or_the_users_line():
    waiting = (
        "Stack (most recent call first):\n"
        '  File "/x/torch/distributed/distributed_c10d.py", line 10 in all_reduce\n'
        '  File "/x/torch/distributed/c10d_logger.py", line 5 in wrapper\n'
        '  File "/u/losses.py", line 7 in loss\n'
        '  File "/x/lossctl/distributed/worker.py", line 1 in run_vjp\n'
    )
    assert describe_stack(waiting) == ("collective", "all_reduce (called at losses.py:7 in loss)")
    sleeping = 'Stack (most recent call first):\n  File "/u/losses.py", line 9 in loss\n'
    assert describe_stack(sleeping) == ("user", "losses.py:9 in loss")
    assert describe_stack("") == ("unknown", "")


def test_a_function_that_does_not_load_is_one_setup_row(watched, write_spec):
    spec = write_spec("function: tests.distributed_fns.nope\nworld_size: [2, 4]\nargs: {x: {shape: [4], shard: 0}}\n")
    code, data, stderr, _ = watched("check", str(spec), "--checks", DIST_CHECKS)
    assert code == 2, stderr
    (case,) = data["cases"]
    (row,) = case["checks"]
    assert case["case"] == "nope" and row["check"] == "setup" and row["status"] == "error"
    assert row["detail"].startswith("cannot load `tests.distributed_fns.nope`")

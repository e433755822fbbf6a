"""benchmarks/gpu.sh's plumbing, without a GPU: its steps and sizes (--dry-run) and its switches."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu.sh"


def dry_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
        check=False,
    )


def test_dry_run_lists_the_issue_sizes_on_cuda_within_five_minutes():
    result = dry_run()
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("=== ")]
    names = [line.split()[1] for line in steps]
    assert names == ["suite-check", "suite-bench", "linear-ce", "cross-entropy", "agreement"]
    assert all("--device cuda" in line for line in steps)
    text = result.stdout
    assert (
        "benchmarks/linear_ce.yaml --device cuda --dtype bfloat16 --dims N=8192 --dims D=4096 --dims V=128256" in text
    )
    assert "benchmarks/cross_entropy_large.yaml --device cuda --min-time" in text
    limits = [int(line.split("(limit ")[1].split("s)")[0]) for line in steps]
    assert sum(limits) < 300


def test_the_large_cross_entropy_spec_has_the_issue_size():
    from lossctl.spec import load_spec_file

    (spec,) = load_spec_file(REPO / "benchmarks" / "cross_entropy_large.yaml")
    assert dict(spec.dims) == {"N": (32768,), "C": (128256,)}
    assert spec.args["logits"].dtype == "bfloat16"


def test_device_and_small_switch_every_step():
    result = dry_run("--device=cpu", SMALL="1")
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("=== ")]
    assert all("--device cpu" in line for line in steps)
    assert "--dims N=64 --dims D=16 --dims V=300" in result.stdout


def test_an_unknown_argument_is_refused():
    result = dry_run("--fast")
    assert result.returncode == 2
    assert "unknown argument --fast" in result.stderr

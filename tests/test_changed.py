"""--changed-since: only the specs whose file or Function source changed since a git ref."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GOOD = textwrap.dedent(
    """
    import torch
    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x
        @staticmethod
        def backward(ctx, g):
            return 2 * g
    """
)


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "losses_a.py").write_text(GOOD)
    (tmp_path / "losses_b.py").write_text(GOOD)
    for name in ("a", "b"):
        (tmp_path / "configs" / f"{name}.yaml").write_text(
            f"function: losses_{name}.Twice\nname: {name}\nargs: {{x: {{shape: [3]}}}}\n"
        )
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("losses_a", "losses_b"):
        sys.modules.pop(name, None)
    return tmp_path


def names(result):
    return [c["case"] for c in json.loads(result.stdout)["cases"]]


def test_nothing_changed(run_cli, repo):
    result = run_cli("check", "--changed-since", "HEAD", "-j", "0", cwd=repo)
    assert result.exit_code == 0
    assert "nothing to check: no spec or Function changed since HEAD" in result.stderr


def test_a_changed_function_source_selects_its_spec(run_cli, repo):
    (repo / "losses_b.py").write_text(GOOD + "\n# touched\n")
    result = run_cli("check", "--changed-since", "HEAD", "-j", "0", "--checks", "forward", "-f", "json", cwd=repo)
    assert result.exit_code == 0 and names(result) == ["b"]


def test_a_changed_spec_selects_itself(run_cli, repo):
    (repo / "configs" / "a.yaml").write_text("function: losses_a.Twice\nname: a\nseed: 3\nargs: {x: {shape: [3]}}\n")
    result = run_cli("check", "--changed-since", "HEAD", "-j", "0", "--checks", "forward", "-f", "json", cwd=repo)
    assert names(result) == ["a"]


def test_bad_ref_and_no_repo(run_cli, repo, tmp_path_factory):
    result = run_cli("check", "--changed-since", "no-such-branch", cwd=repo)
    assert result.exit_code == 2 and "--changed-since no-such-branch" in result.stderr
    elsewhere = tmp_path_factory.mktemp("plain")
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "x.yaml").write_text("function: tests.fns.Square\n")
    result = run_cli("check", "--changed-since", "HEAD", cwd=elsewhere)
    assert result.exit_code == 2 and "is not inside a git repository" in result.stderr


def test_untracked_spec_found_from_a_subfolder(run_cli, repo):
    (repo / "configs" / "c.yaml").write_text("function: losses_a.Twice\nname: c\nargs: {x: {shape: [3]}}\n")
    result = run_cli(
        "check",
        str(repo / "configs"),
        "--changed-since",
        "HEAD",
        "-j",
        "0",
        "--checks",
        "forward",
        "-f",
        "json",
        cwd=repo / "configs",
    )
    assert names(result) == ["c"]

"""selection.py, threads.py and the CLI's run control: invalid specs reported while the others
run, -k, -x, --lf, --threads, and a JUnit file also when nothing ran."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from lossctl.errors import UsageError
from lossctl.selection import keyword_matcher
from lossctl.spec import load_specs
from lossctl.threads import LARGE_CASE_ELEMENTS, case_threads

SUITE = """
specs:
  - {name: good, function: tests.fns.Square}
  - {name: flipped, function: tests.fns.FlippedSign}
  - {name: zero, function: tests.fns.ZeroGrad}
"""
FAST = ("--checks", "forward,gradcheck", "-j", "0")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ("Cross", {"CrossEntropyLoss[N=1]", "CrossEntropyLoss[N=8]"}),
        ("cross and not N=1", {"CrossEntropyLoss[N=8]"}),
        ("focal or (cross and N=8)", {"Focal", "CrossEntropyLoss[N=8]"}),
        ("not cross", {"Focal"}),
    ],
)
def test_keyword_expressions(expression, matches):
    names = {"CrossEntropyLoss[N=1]", "CrossEntropyLoss[N=8]", "Focal"}
    match = keyword_matcher(expression)
    assert {name for name in names if match(name)} == matches


@pytest.mark.parametrize("expression", ["", "a and", "(a", "a b", "or a"])
def test_malformed_keyword_expressions_are_usage_errors(expression):
    with pytest.raises(UsageError):
        keyword_matcher(expression)


def test_an_invalid_spec_is_reported_and_the_others_still_run(run_cli, tmp_path):
    write(tmp_path, "a_bad.yaml", "function: tests.fns.Square\ndims: {N: 3}\nargs:\n  x: {shape: [N], hihg: 2}\n")
    write(tmp_path, "b_worse.yaml", "function: tests.fns.Square\nseed: -1\n")
    write(tmp_path, "c_suite.yaml", SUITE)
    result = run_cli("check", str(tmp_path), *FAST)
    assert result.exit_code == 2  # a spec could not be read: "could not run", though others did
    out = " ".join(result.stdout.split())
    assert "a_bad.yaml:4: args.x.hihg: unknown key" in out and "b_worse.yaml:2: seed" in out  # both reported
    assert "✓ good" in out and "✗ flipped" in out and "2 invalid specs" in out
    data = json.loads(run_cli("check", str(tmp_path), *FAST, "--format", "json").stdout)
    assert [c["checks"][0]["check"] for c in data["cases"][:2]] == ["spec", "spec"]


def test_exitfirst_stops_after_the_first_failing_case(run_cli, tmp_path):
    spec = write(tmp_path, "suite.yaml", SUITE)
    # In workers (the default for several cases), where -x dispatches one case at a time.
    result = run_cli("check", str(spec), "--checks", "forward,gradcheck", "-x", "--format", "json")
    assert result.exit_code == 1
    assert [case["case"] for case in json.loads(result.stdout)["cases"]] == ["good", "flipped"]


def test_k_selects_cases_by_name(run_cli, tmp_path):
    spec = write(tmp_path, "suite.yaml", SUITE)
    result = run_cli("check", str(spec), *FAST, "-k", "good or zero", "--format", "json")
    assert [case["case"] for case in json.loads(result.stdout)["cases"]] == ["good", "zero"]
    nothing = tmp_path / "none.xml"
    result = run_cli("check", str(spec), *FAST, "-k", "nomatch", "--format", "junit", "--output", str(nothing))
    assert result.exit_code == 0 and "nothing to check: no case matches -k" in result.stderr
    assert 'name="note" value="nothing ran' in nothing.read_text()  # CI still gets its file


def test_last_failed_reruns_only_the_failures(run_cli, tmp_path):
    spec = write(tmp_path, "suite.yaml", SUITE.replace("tests.fns", "fns"))
    (tmp_path / "fns.py").write_text((Path(__file__).parent / "fns.py").read_text(), encoding="utf-8")
    first = run_cli("check", "suite.yaml", *FAST, cwd=tmp_path)
    assert first.exit_code == 1
    cache = json.loads((tmp_path / ".lossctl_cache" / "lastfailed.json").read_text())
    assert cache["failed"] == ["suite.yaml::flipped", "suite.yaml::zero"]
    again = run_cli("check", "suite.yaml", *FAST, "--lf", "--format", "json", cwd=tmp_path)
    assert [case["case"] for case in json.loads(again.stdout)["cases"]] == ["flipped", "zero"]
    assert spec.exists()


def test_threads_one_for_small_cases_a_share_for_large_ones_or_as_asked():
    (small,) = load_specs("function: m.F\ndims: {N: 8}\nargs:\n  x: {shape: [N]}\n")
    (large,) = load_specs(f"function: m.F\ndims: {{N: {LARGE_CASE_ELEMENTS}}}\nargs:\n  x: {{shape: [N]}}\n")
    before = torch.get_num_threads()
    with case_threads(None, small, 0) as threads:
        assert threads == torch.get_num_threads() == 1
    with case_threads(None, large, 0) as threads:
        assert threads == before
    with case_threads(2, small, 0):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_threads_flag_is_validated(run_cli):
    result = run_cli("check", "tests.fns.Square", "--threads", "0")
    assert result.exit_code == 2 and "--threads must be 1 or more" in result.stderr


def test_last_failed_with_no_failure_among_the_selected_runs_them_all(run_cli, tmp_path):
    """--lf where the recorded failures are in other specs: run what was asked, never "OK, nothing ran"."""
    write(tmp_path, "suite.yaml", SUITE.replace("tests.fns", "fns"))
    (tmp_path / "fns.py").write_text((Path(__file__).parent / "fns.py").read_text(), encoding="utf-8")
    assert run_cli("check", "suite.yaml", *FAST, cwd=tmp_path).exit_code == 1  # records flipped, zero
    other = write(tmp_path, "other.yaml", "function: fns.Square\nargs: {x: {shape: [3]}}\n")
    again = run_cli("check", str(other), *FAST, "--lf", "--format", "json", cwd=tmp_path)
    assert again.exit_code == 0 and [case["case"] for case in json.loads(again.stdout)["cases"]] == ["Square"]

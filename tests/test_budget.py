"""The per-case time budget (--budget, `budget:` in a spec and in the project config): its
resolution, its validation, and that it reaches the checks that plan by it."""

from __future__ import annotations

import json
import re

import pytest

from lossctl.config import ConfigError, ProjectConfig, load_config
from lossctl.errors import UsageError
from lossctl.report import Status
from lossctl.settings import DEFAULT_BUDGET_S, case_budget, resolve_settings
from lossctl.spec import SpecError, load_specs

MSE = "dims: {N: 300, C: 10}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}}"


def test_the_flag_wins_over_the_spec_over_the_config(tmp_path):
    project = ProjectConfig(root=tmp_path, budget=40.0)
    settings = resolve_settings(project)
    assert (settings.budget, settings.config_budget) == (None, 40.0)
    assert case_budget(settings.budget, None, settings.config_budget) == 40.0
    assert case_budget(settings.budget, 20.0, settings.config_budget) == 20.0
    flagged = resolve_settings(project, budget=7.5)
    assert case_budget(flagged.budget, 20.0, flagged.config_budget) == 7.5
    assert resolve_settings(ProjectConfig(root=tmp_path)).config_budget == DEFAULT_BUDGET_S == 60.0


def test_a_large_budget_raises_the_default_timeout_with_it(tmp_path):
    assert resolve_settings(ProjectConfig(root=tmp_path)).timeout == 300.0
    assert resolve_settings(ProjectConfig(root=tmp_path), budget=400.0).timeout == 800.0
    # an explicit timeout is the user's: kept as given
    assert resolve_settings(ProjectConfig(root=tmp_path, timeout=100.0), budget=400.0).timeout == 100.0


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_the_flag_must_be_finite_and_positive(tmp_path, value):
    with pytest.raises(UsageError, match="--budget must be a positive number of seconds"):
        resolve_settings(ProjectConfig(root=tmp_path), budget=value)


@pytest.mark.parametrize("value", ["0", "-3", "inf", "nan", "soon", "true"])
def test_the_config_key_is_validated(tmp_path, value):
    (tmp_path / "lossctl.yaml").write_text(f"budget: {value}\n")
    with pytest.raises(ConfigError, match="budget"):
        load_config(tmp_path)


def test_the_config_key_is_read(tmp_path):
    (tmp_path / "lossctl.yaml").write_text("budget: 12\n")
    assert load_config(tmp_path).budget == 12.0


@pytest.mark.parametrize(("value", "message"), [("0", "> 0"), ("-2", "> 0"), (".inf", "finite"), ("soon", "number")])
def test_the_spec_key_is_validated(value, message):
    with pytest.raises(SpecError, match=f"budget.*{message}"):
        load_specs(f"function: a.b\nbudget: {value}\n", source="s.yaml")


def test_the_spec_key_is_read():
    (spec,) = load_specs("function: a.b\nbudget: 90\n", source="s.yaml")
    assert spec.budget == 90.0


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan"])
def test_cli_rejects_a_bad_budget(run_cli, value):
    result = run_cli("check", "tests.fns.Square", "--budget", value)
    assert result.exit_code == 2, result.output
    assert "--budget must be a positive number of seconds" in result.output


def test_the_budget_reaches_the_checks_that_plan_by_it(run_cli, tmp_path):
    spec = tmp_path / "mse.yaml"
    spec.write_text(f"function: lossctl.examples.scale.MeanSquaredError\n{MSE}\nbudget: 8\n")
    plans = {}
    for extra in ((), ("--budget", "4")):
        out = tmp_path / f"report{len(extra)}.json"
        result = run_cli("check", str(spec), "--checks", "gradient_blocks", "-f", "json", "-o", str(out), *extra)
        assert result.exit_code == 0, result.output
        (case,) = json.loads(out.read_text())["cases"]
        (row,) = [c for c in case["checks"] if c["check"] == "gradient_blocks"]
        assert row["status"] == Status.PASSED.value
        plans[extra] = row["data"]["plan"]["budget_seconds"]
    # half of what is left of the case's budget: the spec's 8 s, then --budget's 4 s
    assert 3.0 < plans[()] <= 4.0
    assert 1.0 < plans[("--budget", "4")] <= 2.0


# --------------------------------------------------------------------------- checks that join at scale

FEW = ("gradcheck", "gradient_scaled")
"""The checks these tests keep (the rest skipped), so a case is quick yet gradient_blocks may join."""


def run_mse(function: str, n: int, budget: float | None, extra: str = "", checks: tuple[str, ...] | None = None):
    from lossctl.catalogue import CHECK_IDS
    from lossctl.runner import RunOptions, run_checks
    from lossctl.suite import Job

    text = f"function: lossctl.examples.scale.{function}\n{MSE.replace('300', str(n))}\n{extra}"
    (spec,) = load_specs(text, source="t.yaml")
    skip = tuple(c for c in CHECK_IDS if c not in (*FEW, "gradient_blocks"))
    options = RunOptions(device="cpu", budget=budget, skip=() if checks else skip, checks=checks)
    (case,) = run_checks([Job(spec)], options).cases
    return {r.check: r for r in case.checks}


def test_scale_checks_join_only_when_nothing_chose_the_checks():
    from lossctl.checks import scale_checks

    assert [c.id for c in scale_checks()] == ["gradient_blocks"]
    assert scale_checks(only=("gradcheck",)) == ()
    assert scale_checks(skip=("gradient_blocks",)) == ()
    assert scale_checks(spec={"gradient_blocks": False}) == ()
    assert scale_checks(base=("gradcheck",)) == ()


def test_a_large_case_gets_gradient_blocks_by_default_and_it_finds_the_last_row():
    # 2·10⁵ elements: a full Jacobian (a forward each) cannot fit a 4 s budget
    results = run_mse("MSELastRowZero", 20000, budget=4.0)
    assert results["gradcheck"].status is Status.PASSED  # one random direction: blind to one row
    blocks = results["gradient_blocks"]
    assert blocks.status is Status.FAILED, blocks.detail
    assert "row 19999 of N=20000 (the last one) is wrong" in blocks.detail
    assert list(results) == ["gradcheck", "gradient_scaled", "gradient_blocks"]


def test_a_small_case_or_a_spec_that_says_no_keeps_the_battery_as_it_was():
    assert "gradient_blocks" not in run_mse("MSELastRowZero", 50, budget=None)
    off = run_mse("MSELastRowZero", 20000, budget=4.0, extra="checks: {gradient_blocks: false}")
    assert "gradient_blocks" not in off
    assert "gradient_blocks" not in run_mse("MSELastRowZero", 20000, budget=4.0, checks=FEW)


def test_a_check_that_cannot_fit_what_is_left_skips_saying_so(monkeypatch):
    # a budget spent before the checks start: priced checks skip with their cost, the rest run
    from lossctl.case import CheckContext

    monkeypatch.setattr(CheckContext, "remaining_s", lambda self: 0.0)
    results = run_mse("MeanSquaredError", 50, budget=None, checks=("backward", "gradcheck", "linearity"))
    assert results["backward"].status is Status.PASSED
    for check in ("gradcheck", "linearity"):
        assert results[check].status is Status.SKIPPED
        assert re.fullmatch(
            r"would need ≥ \d+× forward\+backward ≈ [\d.e-]+ s; the plan gives the 0 s available of the 60 s "
            r"budget to the checks before it \(gradient checks first\); raise --budget",
            results[check].detail,
        ), results[check].detail
    # nothing verified a gradient value: said, never an OK
    assert results["verified"].status is Status.FAILED


def test_json_and_verbose_report_what_the_case_cost(run_cli, tmp_path):
    spec = tmp_path / "mse.yaml"
    spec.write_text(f"function: lossctl.examples.scale.MeanSquaredError\n{MSE}\n")
    out = tmp_path / "report.json"
    result = run_cli("check", str(spec), "--checks", "gradcheck", "-v", "-f", "json", "-o", str(out), "-f", "table")
    assert result.exit_code == 0, result.output
    (case,) = json.loads(out.read_text())["cases"]
    resources = case["resources"]
    assert resources["budget_s"] == 60.0
    assert resources["peak_rss_mb"] > 10
    assert 0 < resources["forward_backward_s"] < resources["checks_s"] + 1
    assert re.search(
        r"MeanSquaredError: checks [\d.]+ s of a 60 s budget, "
        r"one forward\+backward [\d.e-]+ s \(\d+×\), peak RSS \d+ MB",
        result.stdout,
    )

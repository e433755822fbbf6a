"""The per-case time budget (--budget, `budget:` in a spec and in the project config): its
resolution, its validation, and that it reaches the checks that plan by it."""

from __future__ import annotations

import json

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

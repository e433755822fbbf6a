"""config.py: lossctl.yaml / [tool.lossctl], strict keys, and defaults < config < spec < flags."""

from __future__ import annotations

import json
import textwrap

import pytest

from lossctl.config import ConfigError, ProjectConfig, load_config


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_defaults_without_a_file(tmp_path):
    config = load_config(tmp_path)
    assert config == ProjectConfig(root=tmp_path)
    assert config.spec_paths() == [str(tmp_path / "configs")]


def test_lossctl_yaml(tmp_path):
    write(
        tmp_path / "lossctl.yaml",
        """
        specs: [losses/specs, more.yaml]
        device: cpu
        checks: [forward, backward, gradcheck]
        skip: [gradcheck]
        tolerance: {atol: 1e-4}
        timeout: 60
        jobs: auto
        """,
    )
    config = load_config(tmp_path)
    assert config.spec_paths() == [str(tmp_path / "losses/specs"), str(tmp_path / "more.yaml")]
    assert config.device == "cpu" and config.checks == ("forward", "backward", "gradcheck")
    assert config.tolerance == {"atol": 1e-4} and config.timeout == 60 and config.jobs == "auto"


def test_pyproject_tool_section(tmp_path):
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.lossctl]\ndevice = "cpu"\njobs = 0\n')
    config = load_config(tmp_path)
    assert config.device == "cpu" and config.jobs == "0"
    assert "pyproject.toml [tool.lossctl]" in config.source


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("devise: cpu\n", "devise: unknown key"),
        ("checks: [gradchek]\n", "checks: unknown check `gradchek`"),
        ("tolerance: {atoll: 1}\n", "tolerance.atoll: unknown key"),
        ("timeout: -3\n", "timeout: expected seconds > 0"),
        ("jobs: lots\n", "jobs: expected a count"),
        ("specs: 3\n", "specs: expected a path"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, text, words):
    write(tmp_path / "lossctl.yaml", text)
    with pytest.raises(ConfigError, match=words):
        load_config(tmp_path)


def test_precedence_config_spec_flags(run_cli, tmp_path):
    (tmp_path / "specs").mkdir()
    write(
        tmp_path / "specs" / "a.yaml",
        """
        specs:
          - name: plain
            function: tests.fns.Square
            args: {x: {shape: [3]}}
          - name: own
            function: tests.fns.Square
            args: {x: {shape: [3]}}
            tolerance: {atol: 0.5}
            checks: {linearity: true}
        """,
    )
    write(
        tmp_path / "lossctl.yaml",
        "specs: [specs]\ndevice: cpu\nchecks: [forward, gradcheck]\ntolerance: {atol: 0.001}\njobs: 0\n",
    )
    result = run_cli("check", "--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    cases = {c["case"]: c for c in json.loads(result.stdout)["cases"]}
    assert [c["check"] for c in cases["plain"]["checks"]] == ["forward", "gradcheck"]  # config
    assert [c["check"] for c in cases["own"]["checks"]] == ["forward", "gradcheck", "linearity"]  # spec
    assert cases["plain"]["checks"][1]["data"]["atol"] == 0.001  # config tolerance
    assert cases["own"]["checks"][1]["data"]["atol"] == 0.5  # the spec's own wins
    flags = run_cli("check", "--format", "json", "--checks", "forward", cwd=tmp_path)
    assert {c["check"] for case in json.loads(flags.stdout)["cases"] for c in case["checks"]} == {"forward"}


def test_bad_config_is_exit_2(run_cli, tmp_path):
    write(tmp_path / "lossctl.yaml", "devise: cpu\n")
    result = run_cli("check", "tests.fns.Square", cwd=tmp_path)
    assert result.exit_code == 2 and "devise: unknown key" in result.stderr

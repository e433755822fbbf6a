"""cli.py: exit codes, messages and output, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bundled_configs_pass(run_cli):
    # configs/distributed/ holds deliberately broken examples too (tests/test_distributed.py runs them)
    result = run_cli("check", *sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml")))
    assert result.exit_code == 0, result.output
    assert "OK 7 passed" in result.stdout and "failed" not in result.stdout
    assert len(result.stdout.splitlines()) <= 25  # one line per case, a header and the totals
    for name in ("CustomLossFunction", "FocalLoss", "CrossEntropyLoss[N=64]"):
        assert name in result.stdout


def test_no_target_runs_the_configs_folder(run_cli):
    result = run_cli("check", "--checks", "forward")
    assert result.exit_code == 0
    assert "FocalLoss" in result.stdout and "CustomLossFunction" in result.stdout


def test_no_target_and_no_configs_is_a_usage_error(run_cli, tmp_path):
    result = run_cli("check", cwd=tmp_path)
    assert result.exit_code == 2
    assert f"no TARGET given and no spec folder {tmp_path / 'configs'}" in result.stderr


def test_clipped_grad_output_fails_linearity_with_exit_1(run_cli):
    result = run_cli("check", "lossctl.examples.broken.ClippedGradMSELoss", "-v")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any("linearity" in line and "FAILED" in line and "not homogeneous" in line for line in lines)
    assert any("gradcheck" in line and "PASSED" in line for line in lines)
    assert "default inputs" in result.stdout


def test_misspelt_key_exits_2_naming_the_key(run_cli, write_spec):
    spec = write_spec(
        """
        function: lossctl.examples.focal.FocalLoss
        dims: {N: 6, C: 5}
        args:
          logits: {shape: [N, C]}
          target: {shape: [N], dtype: int64, hihg: C}
        """
    )
    result = run_cli("check", str(spec))
    assert result.exit_code == 2
    assert f"{spec}:5: args.target.hihg: unknown key. did you mean `high`?" in " ".join(result.stdout.split())
    assert "Traceback" not in result.output


def test_misspelt_argument_exits_2_with_the_signature(run_cli, write_spec):
    spec = write_spec(
        """
        function: lossctl.examples.focal.FocalLoss
        dims: {N: 6, C: 5}
        args:
          logits: {shape: [N, C]}
          tagret: {shape: [N], dtype: int64, high: C}
        """
    )
    result = run_cli("check", str(spec), "--format", "json")
    assert result.exit_code == 2
    (check,) = json.loads(result.stdout)["cases"][0]["checks"]
    assert check["check"] == "setup" and check["status"] == "error"
    assert check["detail"].startswith(f"{spec}:5: args.tagret: ")  # the key's line, not the spec's
    assert "has no parameter `tagret`. Did you mean `target`?" in check["detail"]
    assert "FocalLoss.forward(ctx, logits, target, gamma=2.0)" in check["detail"]


def test_unknown_module_exits_2(run_cli):
    result = run_cli("check", "nosuch.module.Loss")
    assert result.exit_code == 2
    assert "no module found (tried nosuch.module, nosuch)" in result.stdout


def test_one_bad_function_in_a_suite_is_an_error_row(run_cli, write_spec):
    spec = write_spec(
        """
        specs:
          - function: tests.fns.Square
          - function: tests.fns.Nope
        """
    )
    result = run_cli("check", str(spec))
    assert result.exit_code == 1
    assert "has no attribute `Nope`" in result.stdout and "Square" in result.stdout


def test_unavailable_device_exits_2(run_cli):
    result = run_cli("check", "tests.fns.Square", "--device", "cuda:7")
    assert result.exit_code == 2
    assert "--device cuda:7" in result.stderr and "Traceback" not in result.output
    result = run_cli("check", "tests.fns.Square", "--device", "tpu")
    assert result.exit_code == 2 and "unknown device `tpu`" in result.stderr


def test_unknown_check_id_exits_2(run_cli):
    result = run_cli("check", "tests.fns.Square", "--checks", "gradchek")
    assert result.exit_code == 2
    assert "--checks: unknown check `gradchek`" in result.stderr and "gradcheck" in result.stderr


def test_skip_and_seed(run_cli):
    result = run_cli("check", "tests.fns.Square", "--checks", "forward,backward,linearity", "--skip", "linearity", "-v")
    assert result.exit_code == 0
    assert "linearity" not in result.stdout and "backward" in result.stdout and "gradcheck" not in result.stdout
    assert "2 passed" in result.stdout


def test_json_output_is_complete(run_cli):
    result = run_cli("check", "tests.fns.FlippedSign", "--format", "json", "--seed", "3")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["ok"] is False
    (case,) = data["cases"]
    assert case["seed"] == 3 and case["device"] == "cpu" and case["dims"] == {"N": 5, "C": 3}
    checks = {c["check"]: c for c in case["checks"]}
    assert checks["gradcheck"]["status"] == "failed"
    assert checks["gradcheck"]["hint"] == "sign is flipped (backward at tests/fns.py:165)"
    assert checks["gradcheck"]["data"]["mismatches"][0]["argument"] == "x"
    assert data["environment"]["torch"]
    assert data["counts"]["failed"] == sum(c["status"] == "failed" for c in case["checks"]) >= 1


def test_verbose_shows_user_traceback(run_cli):
    quiet = run_cli("check", "tests.fns.RaisesInBackward")
    loud = run_cli("check", "tests.fns.RaisesInBackward", "-v")
    assert quiet.exit_code == loud.exit_code == 1
    assert "ValueError: backward exploded on purpose" in quiet.stdout
    assert "Traceback (most recent call last)" not in quiet.stdout
    assert "Traceback (most recent call last)" in loud.stdout
    assert 'raise ValueError("backward exploded on purpose")' in loud.stdout


def test_import_error_shows_user_traceback_without_verbose(run_cli, tmp_path):
    (tmp_path / "crashy.py").write_text("x = 1\nraise RuntimeError('import-time failure')\n")
    result = run_cli("check", "crashy.py:Loss", cwd=tmp_path)
    assert result.exit_code == 2
    assert "import-time failure" in result.stdout
    assert 'crashy.py", line 2' in result.stdout


def test_checks_command_lists_the_registry(run_cli):
    result = run_cli("checks")
    assert result.exit_code == 0
    for check_id in ("forward", "backward", "gradcheck", "linearity"):
        assert check_id in result.stdout


def test_version(run_cli):
    from lossctl import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"lossctl {__version__}"


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from lossctl.cli import main\n"
        "sys.argv = ['lossctl', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'lossctl --help imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "Exit codes" in result.stdout


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "lossctl", "check", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0
    assert "Usage: lossctl check" in result.stdout

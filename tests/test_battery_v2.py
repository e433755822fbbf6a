"""Battery v2: the catalogue, the check context, one settings resolution, exit code 3, and the run
that never says OK without a verified gradient value."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from lossctl.catalogue import CATALOGUE, CHECK_IDS
from lossctl.config import ProjectConfig
from lossctl.report import Status
from lossctl.settings import resolve_settings

CHECKS_DIR = Path(__file__).resolve().parent.parent / "lossctl" / "checks"


def test_settings_precedence_defaults_config_flags(tmp_path):
    assert resolve_settings(ProjectConfig(root=tmp_path)).device == "auto"
    project = ProjectConfig(
        device="cuda",
        skip=("vmap",),
        checks=("forward", "gradcheck"),
        tolerance={"atol": 1e-4},
        timeout=60.0,
        jobs="0",
        allow_unverified_gradients=True,
        root=tmp_path,
    )
    from_config = resolve_settings(project)
    assert (from_config.device, from_config.timeout, from_config.jobs) == ("cuda", 60.0, 0)
    assert from_config.base_checks == ("forward", "gradcheck") and from_config.skip == ("vmap",)
    assert from_config.tolerance == {"atol": 1e-4} and from_config.config_allows_unverified
    flags = resolve_settings(
        project, device="cpu", skip=("gradcheck",), timeout=5, jobs="2", allow_unverified_gradients=False
    )
    assert (flags.device, flags.timeout, flags.jobs) == ("cpu", 5, 2)
    assert flags.skip == ("vmap", "gradcheck")  # --skip adds to the config's
    assert flags.allow_unverified_gradients is False
    options = flags.run_options()
    assert options.device == "cpu" and options.skip == ("vmap", "gradcheck") and options.base_checks == project.checks


def test_allow_unverified_precedence_config_spec_flag():
    from lossctl.settings import allows_unverified

    assert allows_unverified(None, None, False) is False
    assert allows_unverified(None, None, True) is True  # config
    assert allows_unverified(None, False, True) is False  # the spec over the config
    assert allows_unverified(True, False, False) is True  # the flag over both


def test_python_api_applies_the_project_config(tmp_path, monkeypatch):
    (tmp_path / "lossctl.yaml").write_text("skip: [vmap, gradient_scaled]\ntolerance: {atol: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    import lossctl
    from tests.fns import Square

    report = lossctl.check(Square)
    (case,) = report.cases
    ran = {r.check for r in case.checks}
    assert "vmap" not in ran and "gradient_scaled" not in ran and "gradcheck" in ran
    assert "atol 0.5" in next(r.detail for r in case.checks if r.check == "gradcheck")


@pytest.mark.parametrize("command", ["check", "bench"])
def test_config_device_applies_to_check_and_bench(run_cli, tmp_path, command):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    (tmp_path / "lossctl.yaml").write_text("device: cuda\n")
    result = run_cli(command, "tests.fns.Square", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "cuda" in result.output.lower()


def test_lossctl_crash_exits_3_with_the_traceback(run_cli, monkeypatch):
    import lossctl.runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in lossctl")

    monkeypatch.setattr(lossctl.runner, "run_checks", broken)
    result = run_cli("check", "tests.fns.Square", "-j", "0")
    assert result.exit_code == 3, result.output
    assert "internal error in lossctl — please report" in result.output
    assert "Traceback" in result.output and "ZeroDivisionError: a bug in lossctl" in result.output


def test_allow_unverified_gradients_opts_out(run_cli, write_spec):
    spec = write_spec("function: tests.fns.Float32Only\nargs: {x: {shape: [3], dtype: float32}}\n")
    failed = run_cli("check", str(spec), "-j", "0")
    assert failed.exit_code == 1 and "no gradient value was verified" in failed.output
    accepted = run_cli("check", str(spec), "-j", "0", "--allow-unverified-gradients")
    assert accepted.exit_code == 0, accepted.output
    assert "accepted (allow_unverified_gradients)" in accepted.output
    in_spec = write_spec(
        "function: tests.fns.Float32Only\nallow_unverified_gradients: true\nargs: {x: {shape: [3], dtype: float32}}\n",
        name="spec2.yaml",
    )
    assert run_cli("check", str(in_spec), "-j", "0").exit_code == 0


def keyword_scaled_mse(input, target, *, scale):
    return scale * ((input - target) ** 2).mean()


def test_compile_passes_the_keyword_arguments(check_function):
    spec = "dims: {N: 4, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}, scale: 2.0}\n"
    result = check_function("tests.test_battery_v2.keyword_scaled_mse", spec, checks=("compile",))["compile"]
    assert result.status is Status.PASSED, result.detail


def test_no_check_imports_another_check():
    for path in CHECKS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lossctl.checks."):
                assert node.module.rsplit(".", 1)[1] not in CHECK_IDS, f"{path.name} imports {node.module}"


def test_catalogue_lists_one_module_per_check_and_option_names_are_constants():
    modules = {p.stem for p in CHECKS_DIR.glob("*.py")} - {"__init__", "base", "common"}
    assert modules == set(CHECK_IDS)
    for entry in CATALOGUE:
        source = (CHECKS_DIR / f"{entry.id}.py").read_text()
        for option in entry.options:
            assert f'"{option.name}"' not in source, f"{entry.id}: option `{option.name}` as a string literal"


def test_context_probes_float64_once(monkeypatch):
    import torch

    from lossctl.api import _jobs
    from lossctl.runner import build_cases
    from tests.fns import Square

    (job,) = _jobs(Square, None)
    (case,) = build_cases(job, torch.device("cpu"), 0)
    calls = []
    original = case.call

    def counting(values, dtype=None, *args, **kwargs):
        calls.append(dtype)
        return original(values, dtype, *args, **kwargs)

    monkeypatch.setattr(case, "call", counting)
    assert case.runs_in_float64() and case.runs_in_float64()
    case.float64_outputs()
    case.use_fast_mode()
    assert calls == [torch.float64]
    assert case.cost_s() > 0 and case.cost_s() == case.cost_s()
    assert case.budget_s == 60.0 and case.remaining_s() <= 60.0


def test_readme_lists_every_check():
    readme = (CHECKS_DIR.parent.parent / "README.md").read_text()
    missing = [c for c in CHECK_IDS if f"`{c}`" not in readme]
    assert not missing


def test_edge_size_refused_by_the_function_is_not_a_failure(check_function):
    spec = textwrap.dedent(
        """
        dims: {N: 5, C: 3}
        args: {x: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}}
        """
    )
    result = check_function("tests.bugs.MovingAverageMSE", spec, checks=("edge_sizes",))["edge_sizes"]
    assert result.status is Status.PASSED, result.detail
    assert "not supported (the Function refuses it): N=1 (ValueError: window 2 is longer" in result.detail


def test_a_wrong_gradient_points_at_the_users_backward(check_function):
    result = check_function("tests.bugs.SmoothL1MissingMean", None, checks=("gradcheck",))["gradcheck"]
    assert result.status is Status.FAILED
    assert "15.000× too large" in result.hint and "(backward at tests/bugs.py:35)" in result.hint

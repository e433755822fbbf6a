"""render/compact.py and findings.py: the default report, root-cause grouping, and fitting 80
columns without cutting a figure (the bench table too)."""

from __future__ import annotations

import re

from rich.console import Console

from lossctl.findings import case_findings
from lossctl.render import compact
from lossctl.report import CaseResult, CheckResult, Environment, Report, Status

ENV = Environment(torch="2.x", python="3.11", platform="linux", device="cpu", device_name="cpu", threads=2)
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]\d+)?")


def text_of(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, file=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def mismatch(argument: str) -> dict:
    return {"mismatches": [{"argument": argument}]}


def failing_case() -> CaseResult:
    long = (
        "`z2`: 12/15 elements wrong; worst [3, 1] expected -0.123456789, got 0.987654321; rel err 2.0000001 "
        "and the second worst 1234567.125 at index [4, 2] with a tolerance of 1.0e-05"
    )
    checks = (
        CheckResult("forward", Status.PASSED, "out () float64", 0.5),
        CheckResult("gradcheck", Status.FAILED, long, 3.0, hint="sign is flipped", data=mismatch("z2")),
        CheckResult("gradient_scaled", Status.FAILED, "error 2 of scale", 2.0, hint="h2", data=mismatch("z2")),
        CheckResult("edge_sizes", Status.FAILED, "N=1: Jacobian mismatch", 1.0, hint="a .squeeze()?"),
        CheckResult("linearity", Status.FAILED, "not homogeneous for `x`", 1.0, data={"argument": "x"}),
        CheckResult("vmap", Status.SKIPPED, "no vmap rule", 0.0),
    )
    return CaseResult("Loss[N=2]", "Loss", "m.Loss", "s.yaml", {"N": 2}, 0, "cpu", checks)


def passing_case(name: str) -> CaseResult:
    checks = (CheckResult("forward", Status.PASSED, "ok", 0.5), CheckResult("gradcheck", Status.PASSED, "ok", 1.0))
    return CaseResult(name, name, f"m.{name}", "s.yaml", {}, 0, "cpu", checks)


def test_one_gradient_error_is_one_finding_with_its_confirming_checks():
    first, second = case_findings(failing_case())
    assert first.title == "wrong gradient for `z2`"
    assert first.checks == ("gradcheck", "gradient_scaled", "edge_sizes")
    assert first.hint == "sign is flipped"  # gradcheck's hint, not edge_sizes' squeeze guess
    assert second.checks == ("linearity",)  # another symptom, another finding


def test_default_output_fits_80_columns_and_keeps_every_figure_whole():
    report = Report(cases=(passing_case("Good"), failing_case()), environment=ENV)
    out = text_of(compact.render(report, width=80))
    assert max(len(line) for line in out.splitlines()) <= 80
    joined = " ".join(out.split())
    for number in NUMBER.findall(failing_case().checks[1].detail):
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.])", joined), number
    assert "✓ Good" in out and "✗ Loss[N=2]" in out
    assert "wrong gradient for `z2` — seen by gradcheck, gradient_scaled, edge_sizes" in joined
    assert "a .squeeze()?" not in out
    assert "out () float64" not in out  # passing checks stay out of the failure section
    assert out.rstrip().splitlines()[-1].startswith("FAILED 1 failed, 1 passed")


def test_quiet_prints_only_failures_and_totals():
    report = Report(cases=(passing_case("Good"), failing_case()), environment=ENV)
    out = text_of(compact.render(report, quiet=True, width=80))
    assert "✓ Good" not in out and "short summary" in out and "FAILED 1 failed" in out


def test_a_green_run_is_a_line_per_case_and_a_totals_line():
    report = Report(cases=tuple(passing_case(f"Case{i}") for i in range(5)), environment=ENV)
    lines = text_of(compact.render(report, width=80)).splitlines()
    assert len(lines) == 7 and lines[-1].startswith("OK 5 passed")


def test_cli_groups_a_flipped_sign(run_cli):
    checks = ("--checks", "forward,gradcheck,gradient_scaled,edge_sizes,linearity")
    result = run_cli("check", "tests.fns.FlippedSign", "-j", "0", *checks)
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert "wrong gradient for `x` — seen by gradcheck, gradient_scaled" in out
    assert "hint: sign is flipped" in out and "backward at tests/fns.py:" in out
    verbose = run_cli("check", "tests.fns.FlippedSign", "-j", "0", *checks, "-v")
    assert "┃ case" in verbose.stdout and "PASSED" in verbose.stdout  # -v: the full table


def test_factor_hints_name_only_quantities_that_match():
    from lossctl.diagnose import factor_hint

    assert factor_hint(5.0, {"N": 5, "C": 3}) == "gradient is 5.000× too large — missing 1/N (N=5)?"
    assert factor_hint(1 / 15, {"N": 5, "C": 3}).endswith("divided by (N·C) (N·C=15) once too often?")
    assert "N/C" in factor_hint(5 / 3, {"N": 5, "C": 3})
    assert factor_hint(1 / 2.764, {"N": 5, "C": 3}) == "gradient is 2.764× too small"  # no guess


def test_a_factor_of_numel_over_the_mask_count_is_named():
    import torch

    from lossctl.diagnose import factor_hint, named_quantities

    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    quantities = named_quantities(["x", "mask"], [torch.randn(5, 3), mask], {"N": 5, "C": 3})
    assert quantities["count(mask)"] == 11 and quantities["numel(x)"] == 15
    hint = factor_hint(11 / 15, quantities)  # backward divides by numel where forward divided by the count
    assert hint == "gradient is 1.364× too small — divided by (numel(x)/count(mask)) (=15/11) once too often?"

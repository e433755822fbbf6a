"""render/: every format renders a report with every status, and the JSON is plain data."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from lossctl.render import Format, renderer
from lossctl.report import CaseResult, CheckResult, Environment, Report, Status


def sample_report() -> Report:
    checks = tuple(
        CheckResult(check=f"c{i}", status=status, detail=f"{status.value} [detail]", duration_ms=1.5, hint="fix")
        for i, status in enumerate(Status)
    )
    case = CaseResult(
        case="Loss[N=2]",
        spec="Loss",
        function="m.Loss",
        source="s.yaml",
        dims={"N": 2},
        seed=0,
        device="cpu",
        checks=checks,
        notes=("a note",),
    )
    env = Environment(torch="2.x", python="3.11", platform="linux", device="cpu", device_name="cpu", threads=2)
    return Report(cases=(case,), environment=env)


# What each format must show of the sample report: every format names the case and the failing
# check; the GitHub annotations list only problems.
MUST_SHOW = {
    Format.TABLE: ["passed", "failed", "error", "skipped"],
    Format.JSON: ['"passed"', '"failed"', '"error"', '"skipped"'],
    Format.JUNIT: ["<failure", "<error", "<skipped"],
    Format.MARKDOWN: ["1 passed", "1 failed", "1 errors", "1 skipped"],
    Format.GITHUB: ["::error", "c1", "c2"],
}


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders(fmt):
    rendered = renderer(fmt)(sample_report(), verbose=True)
    if not isinstance(rendered, str):
        console = Console(width=200, record=True, color_system=None)
        console.print(rendered)
        rendered = console.export_text()
    for word in MUST_SHOW[fmt]:
        assert word in rendered.lower() if fmt is Format.TABLE else word in rendered, word
    assert "Loss[N=2]" in rendered


def test_report_verdicts_are_derived():
    report = sample_report()
    assert not report.ok
    assert report.counts() == dict.fromkeys(Status, 1)
    assert report.cases[0].status is Status.ERROR
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["cases"][0]["checks"][1]["status"] == "failed"


def test_table_keeps_markup_like_text_literal():
    console = Console(width=200, record=True, color_system=None)
    console.print(renderer(Format.TABLE)(sample_report()))
    assert "[detail]" in console.export_text()

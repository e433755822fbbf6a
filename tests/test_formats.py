"""Golden-structure tests for the CI formats: JUnit XML, JSON (against its schema), Markdown,
GitHub annotations (escaping), and how --format/--output route them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from lossctl.errors import UsageError
from lossctl.render import Format
from lossctl.render.github import escape_data, escape_property
from lossctl.render.json_report import schema_path
from lossctl.render.outputs import plan_outputs

SUITE = """
specs:
  - name: good
    function: tests.fns.Square
    args: {x: {shape: [4, 3]}}
  - name: flipped
    function: tests.fns.FlippedSign
    dims: {N: [2, 3], C: 3}
    args: {x: {shape: [N, C]}}
  - name: raises
    function: tests.fns.RaisesInBackward
    args: {x: {shape: [4, 3]}}
"""
CHECKS = "forward,backward,gradcheck,vmap"


@pytest.fixture
def suite(write_spec):
    return str(write_spec(SUITE, "suite.yaml"))


def test_junit_is_one_testcase_per_case_and_check(run_cli, suite, tmp_path):
    out = tmp_path / "report.xml"
    result = run_cli("check", suite, "--checks", CHECKS, "-j", "0", "--format", "junit", "--output", str(out))
    assert result.exit_code == 1
    assert "short summary" in result.stdout  # the human report stays on stdout
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    (suite_el,) = root.findall("testsuite")
    cases = suite_el.findall("testcase")
    assert len(cases) == 4 * 4  # good, flipped[N=2], flipped[N=3], raises × 4 checks
    assert suite_el.get("tests") == "16"
    names = {c.get("name") for c in cases}
    assert "flipped[N=2]::gradcheck" in names and "good::vmap" in names
    failures = [c for c in cases if c.find("failure") is not None]
    errors = [c for c in cases if c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert suite_el.get("failures") == str(len(failures)) == "2"
    assert suite_el.get("errors") == str(len(errors)) == "2"  # raises: in backward and in gradcheck
    assert suite_el.get("skipped") == str(len(skipped))
    failure = failures[0].find("failure")
    assert "sign is flipped" in failure.text and failure.get("message").startswith("`x`:")
    assert "Traceback" in errors[0].find("error").text
    assert all(float(c.get("time")) >= 0 for c in cases)
    assert failures[0].get("file", "").endswith("fns.py") and int(failures[0].get("line")) > 0


def test_json_matches_its_schema(run_cli, suite, tmp_path):
    out = tmp_path / "report.json"
    result = run_cli("check", suite, "--checks", CHECKS, "-j", "0", "--format", "json", "--output", str(out))
    assert result.exit_code == 1
    data = json.loads(out.read_text())
    schema = json.loads(schema_path().read_text())
    jsonschema.validate(data, schema)
    assert data["counts"] == {"passed": 8, "failed": 2, "error": 2, "skipped": 4}
    assert data["cases"][1]["dims"] == {"N": 2, "C": 3} and data["cases"][1]["seed"] == 0
    assert data["environment"]["threads"] >= 1


def test_json_schema_rejects_a_wrong_report():
    schema = json.loads(schema_path().read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1, "ok": True}, schema)


def test_markdown_summary_and_step_summary(run_cli, suite, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run_cli("check", suite, "--checks", CHECKS, "-j", "0", "--format", "markdown")
    assert result.exit_code == 1
    text = result.stdout
    assert text.startswith("## lossctl: ❌ checks failed")
    assert "| case | Function | passed | failed | errors | skipped |" in text
    assert "| ✅ good | `tests.fns.Square` | 3 | 0 | 0 | 1 |" in text
    assert "### Failures" in text and "| flipped[N=2] | `gradcheck` | failed |" in text
    appended = summary.read_text()
    assert appended.startswith("earlier step\n## lossctl:")


def test_github_annotations_point_at_backward(run_cli, suite, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run_cli("check", suite, "--checks", CHECKS, "-j", "0")
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 4  # two gradcheck failures, two errors
    first = annotations[0]
    assert first.startswith("::error file=tests/fns.py,line=")
    assert "title=lossctl gradcheck failed%3A flipped[N=2]::" in first
    assert "%0Asign is flipped" in first  # the hint on its own line


def test_annotation_escaping():
    assert escape_data("50% off\r\nnext") == "50%25 off%0D%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_output_pairing():
    plan = plan_outputs([Format.JUNIT, Format.JSON], ["a.xml", "b.json"])
    assert plan.stdout is Format.TABLE and [f for f, _ in plan.files] == [Format.JUNIT, Format.JSON]
    plan = plan_outputs([Format.JUNIT, Format.MARKDOWN], ["a.xml"])
    assert plan.stdout is Format.MARKDOWN
    with pytest.raises(UsageError, match="only one format can go to stdout"):
        plan_outputs([Format.JSON, Format.MARKDOWN], [])
    with pytest.raises(UsageError, match="2 --output for 1 --format"):
        plan_outputs([Format.JSON], ["a", "b"])

"""JUnit XML as pytest writes it: one testcase per case × check, so any CI shows the results natively."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from lossctl.paths import relative_path
from lossctl.report import Report, Status


def render(report: Report, **_: Any) -> str:
    counts = report.counts()
    total_s = sum(c.duration_ms for _, c in report.results()) / 1e3
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="lossctl",
        tests=str(len(report.results())),
        failures=str(counts[Status.FAILED]),
        errors=str(counts[Status.ERROR]),
        skipped=str(counts[Status.SKIPPED]),
        time=f"{total_s:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    env = report.environment
    for name, value in (("torch", env.torch), ("device", env.device), ("device_name", env.device_name)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    if not report.cases:  # CI expects the file: say why it holds no test
        ET.SubElement(properties, "property", name="note", value="nothing ran: no case was selected")
    for case, check in report.results():
        # Paths relative to the project root, so the same test has the same name on every machine.
        source = relative_path(case.source) if case.source else None
        classname = case.function if source is None else f"{source}::{case.spec}"
        testcase = ET.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=f"{case.case}::{check.check}",
            time=f"{check.duration_ms / 1e3:.3f}",
        )
        if case.source_file:
            testcase.set("file", relative_path(case.source_file))
            if case.source_line:
                testcase.set("line", str(case.source_line))
        body = "\n".join(
            part
            for part in (check.detail, check.hint and f"hint: {check.hint}", check.explain, check.traceback)
            if part
        )
        if check.status is Status.FAILED:
            ET.SubElement(testcase, "failure", message=check.detail, type="lossctl." + check.check).text = body
        elif check.status is Status.ERROR:
            ET.SubElement(testcase, "error", message=check.detail, type="lossctl." + check.check).text = body
        elif check.status is Status.SKIPPED:
            ET.SubElement(testcase, "skipped", message=check.detail)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

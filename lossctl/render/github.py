"""GitHub Actions workflow commands: an `::error` annotation per problem, at the Function's backward."""

from __future__ import annotations

import os
from typing import Any

from lossctl.report import Report, Status


def escape_data(text: str) -> str:
    """The message part of a workflow command (as @actions/core escapes it)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A `key=value` property of a workflow command: also `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _relative(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def render(report: Report, **_: Any) -> str:
    lines = []
    for case, check in report.results():
        if not check.status.is_problem:
            continue
        level = "error"
        properties = []
        if case.source_file:
            properties.append(f"file={escape_property(_relative(case.source_file))}")
            if case.source_line:
                properties.append(f"line={case.source_line}")
        elif case.source:
            properties.append(f"file={escape_property(_relative(case.source))}")
        word = "failed" if check.status is Status.FAILED else "raised"
        properties.append(f"title={escape_property(f'lossctl {check.check} {word}: {case.case}')}")
        message = check.detail + (f"\n{check.hint}" if check.hint else "")
        lines.append(f"::{level} {','.join(properties)}::{escape_data(message)}")
    return "\n".join(lines) + ("\n" if lines else "")

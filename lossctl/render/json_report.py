"""The report as JSON (a stable, documented shape; see README 'JSON output')."""

from __future__ import annotations

import json
from typing import Any

from lossctl.report import Report

SCHEMA_VERSION = 1


def render(report: Report, *, verbose: bool = False, **_: Any) -> str:
    data = {"schema_version": SCHEMA_VERSION, **report.to_dict()}
    return json.dumps(data, indent=2, allow_nan=False, default=_fallback) + "\n"


def _fallback(value: Any) -> Any:
    if isinstance(value, float):
        return str(value)
    return repr(value)

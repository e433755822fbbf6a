"""The report as JSON, versioned; lossctl/schema/report-v1.schema.json is its JSON Schema."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lossctl.report import Report

SCHEMA_VERSION = 1


def render(report: Report, *, verbose: bool = False, **_: Any) -> str:
    data = {"schema_version": SCHEMA_VERSION, **report.to_dict()}
    return json.dumps(_finite(data), indent=2, allow_nan=False, default=repr) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def schema_path() -> Path:
    return Path(__file__).resolve().parent.parent / "schema" / "report-v1.schema.json"

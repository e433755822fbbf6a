"""Renderers: each takes a Report and returns text or a rich renderable; never prints."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"


def renderer(fmt: Format) -> Callable[..., Any]:
    """The render function for a format: `render(report, verbose=...)`."""
    from lossctl.render import json_report, table

    return {Format.TABLE: table.render, Format.JSON: json_report.render}[fmt]

"""Renderers: each takes a Report and returns text or a rich renderable; never prints."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    MARKDOWN = "markdown"
    GITHUB = "github"


def renderer(fmt: Format) -> Callable[..., Any]:
    """The render function for a format: `render(report, verbose=...)`; only `table` returns a
    rich renderable, the others text."""
    from lossctl.render import github, json_report, junit, markdown, table

    return {
        Format.TABLE: table.render,
        Format.JSON: json_report.render,
        Format.JUNIT: junit.render,
        Format.MARKDOWN: markdown.render,
        Format.GITHUB: github.render,
    }[fmt]

"""Fit a table to the terminal by dropping its least important columns, never by cutting figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass
class Column:
    """A column and its cells, one per row. `keep` orders what is dropped first (lowest first);
    columns with `keep=None` always stay. Only a `wrap` column may break its cells over lines."""

    header: str
    cells: list[Cell] = field(default_factory=list)
    keep: int | None = None
    justify: str = "right"
    wrap: bool = False
    min_width: int = 8

    def width(self) -> int:
        if self.wrap:
            return self.min_width
        return max([len(self.header), *(max(map(len, str(c).splitlines()), default=0) for c in self.cells)])


BORDERS = 1
"""What rich adds per column around its content in a table with edges: one border, two of padding."""


def fit_columns(columns: Sequence[Column], width: int) -> tuple[list[Column], list[str]]:
    """The columns to show within `width` (in their order) and the headers of those dropped."""
    shown = list(columns)
    dropped: list[str] = []

    def needed() -> int:
        return sum(column.width() + 3 for column in shown) + BORDERS

    while needed() > width:
        optional = [c for c in shown if c.keep is not None]
        if not optional:
            break
        victim = min(optional, key=lambda c: c.keep)  # type: ignore[arg-type, return-value]
        shown.remove(victim)
        dropped.append(victim.header)
    return shown, dropped


def build_table(columns: Sequence[Column], rows: int, sections: Sequence[int] = (), **kwargs: object) -> Table:
    """A rich Table of these columns; `sections`: row indices after which a rule is drawn."""
    table = Table(header_style="bold", **kwargs)  # type: ignore[arg-type]
    for column in columns:
        table.add_column(
            column.header,
            justify=column.justify,  # type: ignore[arg-type]
            no_wrap=not column.wrap,
            overflow="fold",
            min_width=column.min_width if column.wrap else None,
        )
    for i in range(rows):
        table.add_row(*(column.cells[i] for column in columns), end_section=i in sections)
    return table

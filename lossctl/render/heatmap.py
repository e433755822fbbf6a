"""A small text heat map of |expected − got| for one argument, so an error pattern shows at a glance."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

LEVELS = (" ", "░", "▒", "▓", "█")
STYLES = ("", "yellow", "dark_orange", "red", "bold red")


def render_heatmap(grid: Sequence[Sequence[float]], title: str) -> Text:
    """One character per cell: blank for no error, then four levels up to the largest error."""
    text = Text(f"{title}\n", style="bold")
    peak = max((max(row) for row in grid if row), default=0.0)
    for row in grid:
        text.append("  │")
        for value in row:
            # Errors below 0.1% of the largest are finite-difference noise: left blank.
            level = 0 if peak == 0 or value < 1e-3 * peak else min(4, 1 + int(3.999 * value / peak))
            text.append(LEVELS[level], style=STYLES[level] or None)
        text.append("│\n")
    text.append(f"  scale: ' ' < {peak * 1e-3:.2g} … '█' {peak:.3g} (rows: dim 0; columns: the other dims, max-pooled)")
    return text

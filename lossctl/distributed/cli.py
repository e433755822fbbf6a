"""Parsing of the distributed flags (`--world-size`), kept out of cli.py."""

from __future__ import annotations

from lossctl.errors import UsageError


def parse_world_size(text: str) -> tuple[int, ...]:
    """`4` or `2,4`: distinct positive rank counts."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(size < 1 for size in sizes) or len(set(sizes)) != len(sizes):
        raise UsageError(f"--world-size: `{text}` is not a size or a list of distinct sizes", hint="e.g. 4 or 2,4")
    return sizes

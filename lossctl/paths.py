"""Paths as reports show them: relative to the project root, so no machine path leaks into a
report, a JUnit name or a repro script saved in CI."""

from __future__ import annotations

from pathlib import Path


def relative_path(path: str | Path, root: Path | None = None) -> str:
    """`path` relative to `root` (default: the working directory, the project root) when it lies
    under it; else as given."""
    try:
        resolved, base = Path(path).resolve(), (root or Path.cwd()).resolve()
    except OSError:
        return str(path)
    if not resolved.is_relative_to(base):
        return str(path)
    return resolved.relative_to(base).as_posix() or "."

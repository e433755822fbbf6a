"""What `lossctl bench` is asked to do, parsed and validated without importing torch, so a bad
flag or a refused spec comes back at once (lossctl.bench, which runs it, imports torch)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossctl.errors import UsageError
from lossctl.limits import MAX_DIM

SCHEMA_VERSION = 1
"""Of `--save` files; `--compare` refuses others."""


@dataclass(frozen=True)
class BenchOptions:
    device: str = "auto"
    dtype: str | None = None
    """Cast every floating input to this dtype; None keeps the spec's dtypes."""
    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Replace these dims' sizes (a sweep) in every spec that has them."""
    seed: int | None = None
    min_time: float = 0.2
    """Seconds each timing's adaptive autorange runs at least."""
    max_time: float = 5.0
    threads: int | None = None
    compare: Mapping[str, Any] | None = None
    """A saved report (parsed JSON) to compare with."""
    compare_name: str | None = None
    fail_slower: float | None = None
    roofline: bool = True
    """Measure the machine's limits (or read them from the cache) for % of roofline."""
    limits_cache: Path | None = None
    """Folder of the limits cache; None: $XDG_CACHE_HOME/lossctl or ~/.cache/lossctl."""
    remeasure: bool = False
    """Measure the limits afresh instead of reading the cache (the cache is then updated)."""


def load_saved(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--compare: no such file: {path}") from None
    except (OSError, ValueError) as error:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise UsageError(f"--compare: cannot read {path} ({str(error)[:200]})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION or "fingerprint" not in data:
        raise UsageError(f"--compare: {path} is not a lossctl bench --save file (schema_version {SCHEMA_VERSION})")
    return data


def parse_dims(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`N=1024,4096` (repeatable) → {"N": (1024, 4096)}."""
    dims: dict[str, tuple[int, ...]] = {}
    for item in items:
        for part in item.split(";"):
            name, sep, sizes = part.partition("=")
            try:
                values = tuple(int(s) for s in sizes.split(",") if s.strip())
            except ValueError:
                values = ()
            if not sep or not name.strip().isidentifier() or not values or min(values) < 1:
                raise UsageError(f"--dims: `{part}` is not NAME=SIZE[,SIZE…]", hint="e.g. --dims N=1024,4096,16384")
            if max(values) > MAX_DIM:  # the spec's own bound on a size
                raise UsageError(f"--dims: {name.strip()}={max(values):,} is more than {MAX_DIM:,} (2⁴⁰)")
            dims[name.strip()] = values
    return dims


def parse_percent(text: str | None) -> float | None:
    if text is None:
        return None
    value = text.strip().removesuffix("%")
    try:
        fraction = float(value) / 100
    except ValueError:
        raise UsageError(f"--fail-slower: `{text}` is not a percentage", hint="e.g. --fail-slower 10%") from None
    if not 0 <= fraction < math.inf:  # nan compares false with everything: the gate could never trip
        raise UsageError(f"--fail-slower: `{text}` must be a finite percentage of 0 or more")
    return fraction

"""Mutated YAML specs for fuzzing the spec loader (tests/test_reliability.py, benchmarks/fuzz.py)."""

from __future__ import annotations

import random

from tests.reliability_cases import VALID_SPEC

SEEDS = [
    VALID_SPEC,
    "specs:\n  - {name: a, function: m.F, dims: {N: [2, 3]}, args: {x: {shape: [N, 4], init: uniform, low: -1}}}\n",
    "function: m.F\nargs:\n  t: {shape: [N], dtype: int64, high: C}\n  k: 3\ndims: {N: 4, C: 5}\n"
    "tolerance: {atol: 1e-6}\nchecks: {edge_sizes: {exclude_dims: [N]}, vmap: false}\n",
    "function: m.F\nreference: m.g\nreference_kwargs: {a: 1}\ndtypes: [float32]\nseed: 7\n",
    "a: &x [1, 2]\nb: *x\nfunction: m.F\n",
]
TOKENS = [
    ": ",
    "\n",
    "  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!python/object:os.system ",
    "!!binary ",
    "<<: ",
    "'",
    '"',
    "\\u202e",
    "\\e",
    "\t",
    "\ufeff",
    "?",
    "|",
    ">",
    "%YAML 1.1\n---\n",
    "...",
    "---",
    "~",
    ".nan",
    "-.inf",
    "0x1F",
    "1e400",
    "9" * 30,
    "-9" * 12,
    "2001-02-30",
    "shape",
    "dims",
    "args",
    "dtype: uint8",
    "high",
    "init",
    "N",
    "specs",
]


MUTATIONS = ("insert", "delete", "replace", "char")
ODD_CHARACTERS = "\x00\x1b\x85\ud800\u2028\ufeff\u202e\U0001f600é"


def mutate(rng: random.Random) -> str:
    """A seed spec with 1–6 random edits: tokens YAML gives meaning to, deletions, odd characters."""
    text = rng.choice(SEEDS)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(text))
        kind = rng.choice(MUTATIONS)
        if kind == "insert":
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + rng.randint(1, 8) :]
        elif kind == "replace":
            text = text[:at] + rng.choice(TOKENS) + text[at + rng.randint(1, 4) :]
        else:
            text = text[:at] + rng.choice(ODD_CHARACTERS + chr(rng.randint(0, 0x10FFFF))) + text[at:]
    return text

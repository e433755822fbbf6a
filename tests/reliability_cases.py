"""Bad inputs for the reliability suite: each a command line (and the files it needs), the exit code
it must end with and a phrase its one message must hold. Shared by tests/test_reliability.py and
benchmarks/bad_inputs_table.py (which prints the table of what each one does)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

SQUARE = "tests.fns.Square"
FAST = ("--checks", "forward", "-j", "0")
"""A cheap run: these inputs are about parsing, paths and flags, not about the checks."""


def _spec(body: str) -> str:
    return textwrap.dedent(body).lstrip()


def _bomb(inside_args: bool) -> str:
    """A "billion laughs": ten levels of nine aliases each (10⁹ strings once expanded)."""
    indent = "  " if inside_args else ""
    lines = [f"{indent}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = "\n".join(lines) + "\n"
    if inside_args:
        return "function: tests.fns.Square\nmodule_kwargs:\n" + bomb + "args:\n  x: {shape: [3]}\n  extra: *a9\n"
    return bomb + "function: tests.fns.Square\n"


@dataclass(frozen=True)
class BadInput:
    """One hostile input. `{tmp}` in argv is the test's temporary folder."""

    id: str
    kind: str
    """cli · path · yaml · user code · fault"""
    argv: tuple[str, ...]
    exit_code: int
    message: str
    """Must appear in the output (stdout + stderr)."""
    files: dict[str, str | bytes] = field(default_factory=dict)
    """Files to create under {tmp} first (name → text or bytes); a name ending in / is a folder."""
    table_printed: bool = False
    """The table (the summary line) must still be printed, although the exit code is 2."""

    def materialize(self, tmp: Path) -> list[str]:
        for name, content in self.files.items():
            path = tmp / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", errors="surrogatepass")
        return [arg.replace("{tmp}", str(tmp)) for arg in self.argv]


def _check(*args: str) -> tuple[str, ...]:
    return ("check", *args)


def _yaml(id: str, body: str, message: str, exit_code: int = 2, extra: tuple[str, ...] = ()) -> BadInput:
    return BadInput(id, "yaml", _check("{tmp}/spec.yaml", *FAST, *extra), exit_code, message, {"spec.yaml": body})


VALID_SPEC = _spec(
    """
    function: tests.fns.Square
    args: {x: {shape: [3]}}
    """
)
SAVED_BENCH = '{"schema_version": 1, "fingerprint": {}, "cases": []}'

BAD_INPUTS: tuple[BadInput, ...] = (
    # ------------------------------------------------------------------ command-line flags
    BadInput("--device cpu:1", "cli", _check(SQUARE, *FAST, "--device", "cpu:1"), 2, "there is one CPU device"),
    BadInput("--device ''", "cli", _check(SQUARE, *FAST, "--device", ""), 2, "empty device name"),
    BadInput("--device tpu", "cli", _check(SQUARE, *FAST, "--device", "tpu"), 2, "--device"),
    BadInput("--seed -1", "cli", _check(SQUARE, *FAST, "--seed", "-1"), 2, "--seed must be an integer from 0"),
    BadInput("--seed 2**63", "cli", _check(SQUARE, *FAST, "--seed", str(2**63)), 2, "--seed must be an integer"),
    BadInput(
        "--checks forward --skip forward",
        "cli",
        ("check", SQUARE, "-j", "0", "--checks", "forward", "--skip", "forward"),
        2,
        "--checks and --skip both name forward",
    ),
    BadInput("--checks nosuch", "cli", ("check", SQUARE, "--checks", "nosuch"), 2, "nosuch"),
    BadInput("--checks ','", "cli", ("check", SQUARE, "--checks", ","), 2, "names no check id"),
    BadInput("--timeout nan", "cli", _check(SQUARE, *FAST, "--timeout", "nan"), 2, "--timeout must be a positive"),
    BadInput("--timeout inf", "cli", _check(SQUARE, *FAST, "--timeout", "inf"), 2, "--timeout must be a positive"),
    BadInput("--timeout 0", "cli", _check(SQUARE, *FAST, "--timeout", "0"), 2, "--timeout must be a positive"),
    BadInput("--timeout -5", "cli", _check(SQUARE, *FAST, "--timeout", "-5"), 2, "--timeout must be a positive"),
    BadInput(
        "config timeout: nan",
        "cli",
        _check(SQUARE, *FAST, "--config", "{tmp}/lossctl.yaml"),
        2,
        "timeout",
        {"lossctl.yaml": "timeout: .nan\n"},
    ),
    BadInput("--timeout 1e12 -j 0 (accepted)", "cli", _check(SQUARE, *FAST, "--timeout", "1e12"), 0, "1 passed"),
    BadInput("--jobs -1", "cli", ("check", SQUARE, "--jobs", "-1"), 2, "--jobs must be 0 or more"),
    BadInput("--jobs many", "cli", ("check", SQUARE, "--jobs", "many"), 2, "is not a number"),
    BadInput("--shard 3/2", "cli", _check(SQUARE, *FAST, "--shard", "3/2"), 2, "is not K/N"),
    BadInput("--format nosuch", "cli", _check(SQUARE, "--format", "nosuch"), 2, "Invalid value"),
    BadInput(
        "--output without --format", "cli", _check(SQUARE, *FAST, "-o", "{tmp}/r.json"), 2, "1 --output for 0 --format"
    ),
    BadInput("two formats on stdout", "cli", _check(SQUARE, *FAST, "-f", "json", "-f", "junit"), 2, "only one format"),
    BadInput(
        "--output a folder",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "{tmp}/out"),
        2,
        "is a folder",
        {"out/": ""},
    ),
    BadInput(
        "--output into /proc",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "/proc/lossctl-report.json"),
        2,
        "cannot create a file in /proc",
    ),
    BadInput(
        "--output into a missing folder",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "{tmp}/missing/r.json"),
        2,
        "does not exist",
    ),
    BadInput(
        "--output under a file",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "{tmp}/plain/r.json"),
        2,
        "is not a folder",
        {"plain": "text"},
    ),
    BadInput(
        "the same file for two --output",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "{tmp}/r", "-f", "junit", "-o", "{tmp}/./r"),
        2,
        "the same file as --output",
    ),
    BadInput(
        "--output /dev/full (disk full)",
        "cli",
        _check(SQUARE, *FAST, "-f", "json", "-o", "/dev/full"),
        2,
        "No space left on device",
        table_printed=True,
    ),
    BadInput("--repro onto a file", "cli", _check(SQUARE, *FAST, "--repro", "{tmp}/f"), 2, "is a file", {"f": "x"}),
    BadInput("--config missing", "cli", _check(SQUARE, *FAST, "--config", "{tmp}/nope.yaml"), 2, "nope.yaml"),
    BadInput(
        "bench --fail-slower nan%",
        "cli",
        ("bench", SQUARE, "--compare", "{tmp}/saved.json", "--fail-slower", "nan%"),
        2,
        "must be a finite percentage",
        {"saved.json": SAVED_BENCH},
    ),
    BadInput(
        "bench --fail-slower -5%",
        "cli",
        ("bench", SQUARE, "--compare", "{tmp}/saved.json", "--fail-slower", "-5%"),
        2,
        "must be a finite percentage",
        {"saved.json": SAVED_BENCH},
    ),
    BadInput(
        "bench --compare a binary file",
        "cli",
        ("bench", SQUARE, "--compare", "{tmp}/saved.json"),
        2,
        "--compare: cannot read",
        {"saved.json": b"\x89PNG\r\n\x1a\n\xff\xfe\x00"},
    ),
    BadInput("bench --compare missing", "cli", ("bench", SQUARE, "--compare", "{tmp}/no.json"), 2, "no such file"),
    BadInput(
        "bench --save into a missing folder",
        "cli",
        ("bench", SQUARE, "--save", "{tmp}/missing/b.json"),
        2,
        "does not exist",
    ),
    BadInput("bench --save into /proc", "cli", ("bench", SQUARE, "--save", "/proc/b.json"), 2, "cannot create a file"),
    BadInput("bench --save a folder", "cli", ("bench", SQUARE, "--save", "{tmp}"), 2, "is a folder"),
    BadInput(
        "bench --save /dev/full (disk full)",
        "cli",
        ("bench", SQUARE, "--dims", "N=4", "--min-time", "0.01", "--max-time", "0.02", "--save", "/dev/full"),
        2,
        "No space left on device",
        table_printed=True,
    ),
    BadInput(
        "bench --plot = --save",
        "cli",
        ("bench", SQUARE, "--save", "{tmp}/b", "--plot", "{tmp}/b"),
        2,
        "the same file as",
    ),
    BadInput("bench --min-time nan", "cli", ("bench", SQUARE, "--min-time", "nan"), 2, "--min-time must be positive"),
    BadInput("bench --max-time inf", "cli", ("bench", SQUARE, "--max-time", "inf"), 2, "--min-time must be positive"),
    BadInput("bench --dims N=0", "cli", ("bench", SQUARE, "--dims", "N=0"), 2, "is not NAME=SIZE"),
    BadInput("bench --format junit", "cli", ("bench", SQUARE, "--format", "junit"), 2, "Invalid value"),
    BadInput("bench --dims over 2⁴⁰", "cli", ("bench", SQUARE, "--dims", "N=1099511627777"), 2, "more than 1,099,511"),
    BadInput(
        "bench --dims: default inputs over 1 GiB",
        "cli",
        ("bench", SQUARE, "--dims", "N=100000000"),
        2,
        "more than the 1,073,741,824 bytes",
    ),
    BadInput("bench --seed -3", "cli", ("bench", SQUARE, "--seed", "-3"), 2, "--seed must be an integer"),
    # ------------------------------------------------------------------ paths and targets
    BadInput("check ''", "path", ("check", ""), 2, "an empty TARGET"),
    BadInput("check '   '", "path", ("check", "   ", *FAST), 2, "an empty TARGET"),
    BadInput("a missing spec file", "path", _check("{tmp}/nope.yaml", *FAST), 2, "no such spec file"),
    BadInput("a folder without specs", "path", _check("{tmp}/empty", *FAST), 2, "no .yaml", {"empty/": ""}),
    BadInput(
        "dir.py:X where dir.py is a folder", "path", _check("{tmp}/dir.py:X", *FAST), 2, "is a folder", {"dir.py/": ""}
    ),
    BadInput("file.py:Nope", "path", _check("{tmp}/m.py:Nope", *FAST), 2, "has no attribute", {"m.py": "x = 1\n"}),
    BadInput(
        "file.py with a SyntaxError",
        "user code",
        _check("{tmp}/broken.py:F", *FAST),
        2,
        "SyntaxError",
        {"broken.py": "def f(:\n    pass\n"},
    ),
    BadInput(
        "dotted module with a SyntaxError",
        "user code",
        ("check", "syntax_error_mod.F", *FAST),
        2,
        "SyntaxError",
        {"syntax_error_mod.py": "class F(:\n"},
    ),
    BadInput(
        "module calling sys.exit(5) on import",
        "user code",
        _check("{tmp}/exits.py:F", *FAST),
        2,
        "raised SystemExit: 5",
        {"exits.py": "import sys\nsys.exit(5)\n"},
    ),
    BadInput(
        "module raising on import",
        "user code",
        _check("{tmp}/raises.py:F", *FAST),
        2,
        "raised ZeroDivisionError",
        {"raises.py": "1 / 0\n"},
    ),
    BadInput("a dotted path to nothing", "path", ("check", "no_such_pkg_xyz.Loss", *FAST), 2, "cannot load"),
    BadInput(
        "a spec that is not UTF-8",
        "path",
        _check("{tmp}/bin.yaml", *FAST),
        2,
        "not UTF-8",
        {"bin.yaml": b"function: a.B\n\xff\xfe\x00\x01"},
    ),
    BadInput(
        "a spec over 1 MiB",
        "path",
        _check("{tmp}/big.yaml", *FAST),
        2,
        "larger than the 1,048,576 bytes",
        {"big.yaml": "function: tests.fns.Square\n" + "# padding\n" * 120_000},
    ),
    # ------------------------------------------------------------------ YAML
    _yaml("alias bomb (top level)", _bomb(False), "expands to more than 100,000 nodes"),
    _yaml("alias bomb (inside args)", _bomb(True), "expands to more than 100,000 nodes"),
    _yaml("5,000-deep lists", "function: a.B\nargs:\n  x: " + "[" * 5000 + "]" * 5000, "nested deeper than 64"),
    _yaml("3,000-deep maps", "function: a.B\nargs:\n  x: " + "{a: " * 3000 + "1" + "}" * 3000, "nested deeper"),
    _yaml("a recursive alias", "function: a.B\nargs:\n  x: &a [*a]\n", "refers to itself"),
    _yaml(
        "dims of 10¹² elements",
        "function: tests.fns.Square\ndims: {N: 1000000, C: 1000000}\nargs: {x: {shape: [N, C]}}\n",
        "need 8,000,000,000,000 bytes",
    ),
    _yaml("N: 10²³", "function: a.B\ndims: {N: 100000000000000000000000}\n", "expected an integer <="),
    _yaml(
        "a product of dims that overflows",
        "function: a.B\ndims: {N: 1099511627776}\nargs: {x: {shape: [N, N, N, N]}}\n",
        "more than any machine holds",
    ),
    _yaml(
        "a value >= 2⁶³",
        "function: a.B\nargs: {x: {shape: [3]}, k: 9223372036854775808}\n",
        "does not fit a 64-bit integer",
    ),
    _yaml("seed >= 2⁶³", "function: a.B\nseed: 9223372036854775808\n", "expected an integer <="),
    _yaml(
        "uint8 high: 100000",
        "function: a.B\nargs: {x: {shape: [3], dtype: uint8, high: 100000}}\n",
        "out of range for uint8",
    ),
    _yaml("int8 low: -1000", "function: a.B\nargs: {x: {shape: [3], dtype: int8, low: -1000, high: 3}}\n", "for int8"),
    _yaml("a zero-size dim in a shape", "function: a.B\nargs: {x: {shape: [0, 3]}}\n", "expected an integer >= 1"),
    _yaml("dims N: 0", "function: a.B\ndims: {N: 0}\n", "expected an integer >= 1"),
    _yaml("an escape sequence in name", 'function: a.B\nname: "\\e[2J\\e[31mowned"\n', "control character U+001B"),
    _yaml("a newline in name", 'function: a.B\nname: "two\\nlines"\n', "no newlines"),
    _yaml("a lone surrogate in name", 'function: a.B\nname: "\\ud800"\n', "lone surrogate"),
    _yaml("a bidi override in function", 'function: "a.B\\u202e"\n', "U+202E"),
    _yaml("a NUL byte in a key", 'function: a.B\n"\\0": 1\n', "U+0000"),
    _yaml("an invalid date", "function: a.B\nseed: 2001-13-45\n", "invalid YAML value"),
    _yaml("a 5,000-digit integer", "function: a.B\nseed: " + "9" * 5000 + "\n", "invalid YAML value"),
    _yaml(
        "a sweep of 39,601 cases",
        "function: a.B\ndims: {N: " + str(list(range(1, 200))) + ", C: " + str(list(range(1, 200))) + "}\n",
        "the sweep makes 39,601 cases",
    ),
    _yaml("a tab-indented spec", "function: a.B\nargs:\n\tx: {shape: [3]}\n", "invalid YAML"),
    _yaml("duplicate keys", "function: a.B\nfunction: c.D\n", "appears twice"),
    _yaml("an empty file", "", "the file is empty"),
    _yaml("atol: .nan", "function: a.B\ntolerance: {atol: .nan}\n", "expected a finite number"),
    _yaml("std: -1", "function: a.B\nargs: {x: {shape: [3], std: -1}}\n", "expected a number > 0"),
    _yaml("mean: a 400-digit integer", "function: a.B\nargs: {x: {shape: [3], mean: " + "9" * 400 + "}}\n", "finite"),
    _yaml("a byte-order mark (accepted)", "\ufeff" + VALID_SPEC, "1 passed", exit_code=0),
    # ------------------------------------------------------------------ user code and faults
    BadInput(
        "-j 0 --timeout 1, a spinning forward",
        "fault",
        ("check", "tests.hostile.SpinsForever", "-j", "0", "--timeout", "1", "--checks", "forward"),
        1,
        "timed out after 1 s",
    ),
    BadInput(
        "-j 0 --timeout 1, a forward that swallows Exception",
        "fault",
        ("check", "tests.hostile.SwallowsEverything", "-j", "0", "--timeout", "1", "--checks", "forward"),
        1,
        "timed out after 1 s",
    ),
    BadInput(
        "forward raises KeyboardInterrupt (-j 0)",
        "user code",
        ("check", "tests.hostile.RaisesKeyboardInterrupt", *FAST),
        130,
        "interrupted",
    ),
    BadInput(
        "forward raises KeyboardInterrupt (-j 1)",
        "user code",
        ("check", "tests.hostile.RaisesKeyboardInterrupt", "--checks", "forward", "-j", "1"),
        130,
        "interrupted: KeyboardInterrupt",
    ),
    BadInput(
        "forward raises GeneratorExit (-j 0)",
        "user code",
        ("check", "tests.hostile.RaisesGeneratorExit", *FAST),
        1,
        "GeneratorExit: forward closed a generator",
    ),
    BadInput(
        "forward raises GeneratorExit (-j 1)",
        "user code",
        ("check", "tests.hostile.RaisesGeneratorExit", "--checks", "forward", "-j", "1"),
        1,
        "GeneratorExit: forward closed a generator",
    ),
    BadInput("forward calls sys.exit", "user code", ("check", "tests.fns.CallsSysExit", *FAST), 1, "SystemExit"),
)

"""The YAML spec format: parsing and strict validation into frozen dataclasses (no torch here)."""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import yaml

from lossctl.catalogue import CHECK_IDS, CHECK_OPTIONS, OptionKind, option_kind
from lossctl.errors import SpecError
from lossctl.limits import (
    INT64_RANGE,
    INT_RANGES,
    ITEM_BYTES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_INPUT_BYTES,
    MAX_SPEC_BYTES,
    YamlLimitError,
    compose_bounded,
    format_bytes,
)

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8")
DTYPE_ALIASES = {
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
}
DTYPES = (*FLOAT_DTYPES, *INT_DTYPES, "bool")

INIT_PARAMS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "std"),
    "uniform": ("low", "high"),
    "randint": ("low", "high"),
    "bernoulli": ("p",),
    "simplex": ("std",),
    "log_simplex": ("std",),
    "positive": ("mean", "std"),
    "constant": ("value",),
    "choice": ("values",),
}
TENSOR_KEYS = (
    "shape",
    "dtype",
    "requires_grad",
    "init",
    "mean",
    "std",
    "low",
    "high",
    "p",
    "value",
    "values",
    "special",
    "shard",
)
SPEC_KEYS = (
    "name",
    "function",
    "seed",
    "dims",
    "args",
    "tolerance",
    "module_kwargs",
    "checks",
    "dtypes",
    "reference",
    "reference_kwargs",
    "allow_unverified_gradients",
    "world_size",
    "combine",
    "budget",
)
COMBINES = ("mean", "sum", "cat")
"""How a distributed spec's ranks' outputs form the global output (see lossctl.distributed)."""
TOLERANCE_KEYS = ("eps", "atol", "rtol", "nondet_tol")

DEFAULT_DIMS = {"N": 5, "C": 3}
"""Sizes of default inputs: distinct and non-square, so a transposed gradient cannot pass."""


@dataclass(frozen=True)
class TensorArg:
    """A tensor argument to build: its shape, dtype and how to fill it."""

    shape: tuple[int | str, ...]
    dtype: str = "float64"
    init: str = "normal"
    requires_grad: bool = True
    mean: float | None = None
    std: float | None = None
    low: float | str | None = None
    high: float | str | None = None
    p: float | None = None
    value: float | None = None
    shard: int | None = None
    """Distributed specs: the dim split into world_size chunks (rank r gets chunk r); None: every
    rank gets the whole tensor."""
    choices: tuple[float, ...] | None = None
    """`init: choice`: every element drawn uniformly from these values."""
    special: tuple[float, float] | None = None
    """(value, fraction): that fraction of the elements (at least one) set to value, e.g. an
    ignore_index of -100 among class targets."""

    @property
    def is_floating(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class ValueArg:
    """A plain Python value passed to forward as it is."""

    value: Any


Arg = TensorArg | ValueArg


@dataclass(frozen=True)
class Tolerance:
    """gradcheck's tolerances; the defaults are gradcheck's own."""

    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3
    nondet_tol: float = 0.0
    """How far two backward passes on identical inputs may differ (0: bitwise equal)."""


@dataclass(frozen=True)
class Spec:
    """One Function under test and how to build its inputs."""

    function: str
    name: str
    args: Mapping[str, Arg] = field(default_factory=dict)
    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    tolerance: Tolerance = Tolerance()
    module_kwargs: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, bool] = field(default_factory=dict)
    """Checks turned on or off by the spec (others follow their default)."""
    check_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dtypes: tuple[str, ...] | None = None
    """Low-precision dtypes to compare against float64; None: the device's default."""
    reference: str | None = None
    """A plain implementation (dotted path) to compare the Function with."""
    reference_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    """The spec file, or None for a spec built on the command line."""
    line: int | None = None
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    """Lines of the `args` keys in the file (`args`, `args.target`), for errors found later."""
    args_given: bool = True
    """False when `args:` was absent: inputs are then built from forward's signature."""
    allow_unverified_gradients: bool | None = None
    """Accept this Function when no check can verify a gradient value (None: the config decides)."""
    world_size: tuple[int, ...] | None = None
    """Ranks to run the Function on (one case per size); None: a single-process spec."""
    combine: str | None = None
    """How the ranks' outputs form the global output (mean, sum, cat); None: the default."""
    budget: float | None = None
    """Seconds this spec's case may spend in its checks (None: the config's, else 60 s)."""

    @property
    def base_dir(self) -> Path:
        """Where relative `file.py:Name` references in this spec are resolved."""
        return Path(self.source).parent if self.source else Path.cwd()


@dataclass(frozen=True)
class CasePoint:
    """One point of a spec's dims sweep."""

    dims: Mapping[str, int]
    swept: tuple[str, ...]
    """The dims that vary over the sweep, to name the case."""

    def label(self) -> str:
        return ",".join(f"{d}={self.dims[d]}" for d in self.swept)


def sweep(spec: Spec) -> list[CasePoint]:
    """Every combination of the spec's dims, in the order the dims were written."""
    names = list(spec.dims)
    swept = tuple(n for n in names if len(spec.dims[n]) > 1)
    points = []
    for values in itertools.product(*(spec.dims[n] for n in names)):
        points.append(CasePoint(dims=dict(zip(names, values, strict=True)), swept=swept))
    return points


MAX_CASES_PER_SPEC = 1_000
"""Points a spec's dims sweep may hold: each is a case that runs every check."""


def input_bytes(spec: Spec, overrides: Mapping[str, Sequence[int]] | None = None) -> tuple[int, dict[str, int]]:
    """Bytes of the tensors the spec's largest case asks for, and that case's dims (sizes only
    grow the inputs, so the largest case takes every dim at its largest)."""
    sizes = {**spec.dims, **(overrides or {})}
    if not spec.args_given:  # default inputs are [N, C]: the default sizes unless given
        sizes = {**{name: (size,) for name, size in DEFAULT_DIMS.items()}, **sizes}
    dims = {name: max(values) for name, values in sizes.items()}
    total = 0
    for arg in spec.args.values():
        if isinstance(arg, TensorArg):
            shape = [dims.get(s, 0) if isinstance(s, str) else s for s in arg.shape]
            total += math.prod(shape) * ITEM_BYTES[arg.dtype]
    if not spec.args_given:  # default inputs: at least one float64 tensor over every dim (one per parameter)
        total = max(total, math.prod(dims.values()) * ITEM_BYTES["float64"])
    return total, dims


def check_input_memory(
    specs: Sequence[Spec],
    *,
    limit: int | None = MAX_INPUT_BYTES,
    overrides: Mapping[str, Sequence[int]] | None = None,
    allow: str = "--allow-large",
) -> None:
    """Refuse a spec whose largest case asks for more input memory than `limit` (None: no limit),
    before any tensor is built; `allow` names the switch that lifts the limit where it is called."""
    if limit is None:
        return
    for spec in specs:
        total, dims = input_bytes(spec, overrides)
        if total > limit:
            shown = ", ".join(
                f"{k}={v:,}"
                for k, v in dims.items()
                if k in {s for a in spec.args.values() if isinstance(a, TensorArg) for s in a.shape}
            )
            raise SpecError(
                f"{spec.name}: the inputs{f' at {shown}' if shown else ''} need {format_bytes(total)}, "
                f"more than the {format_bytes(limit)} allowed",
                source=spec.source,
                line=spec.line,
                hint=f"make the dims smaller, or pass {allow} to run it anyway",
            )


def with_default_args(spec: Spec, parameters: Sequence[str]) -> Spec:
    """The spec with every required parameter a float64 [N, C] tensor (when `args:` is absent)."""
    dims = {**{k: (v,) for k, v in DEFAULT_DIMS.items()}, **spec.dims}
    args = {name: TensorArg(shape=tuple(DEFAULT_DIMS)) for name in parameters}
    return replace(spec, dims=dims, args=args)


# --------------------------------------------------------------------------- loading


def load_spec_file(path: str | Path, *, tolerance: Mapping[str, float] | None = None) -> list[Spec]:
    """Read every spec in one YAML file; `tolerance` gives defaults (the project config's)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError("is a folder, not a spec file", source=str(path))
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})", source=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror or exc})", source=str(path)) from None
    return load_specs(text, source=str(path), tolerance=tolerance)


def load_specs(
    stream: str | IO[str], *, source: str | None = None, tolerance: Mapping[str, float] | None = None
) -> list[Spec]:
    """Parse and validate specs from YAML text; `source` names the file in error messages."""
    text = stream if isinstance(stream, str) else stream.read(MAX_SPEC_BYTES + 1)
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"larger than the {format_bytes(MAX_SPEC_BYTES)} a spec file may be",
            source=source,
            hint="a spec describes inputs; it does not hold them",
        )
    try:
        root, data = compose_bounded(text)
    except YamlLimitError as exc:
        raise SpecError(f"refused: {exc.problem}", source=source, line=exc.line) from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML matched but Python refuses (2001-13-45)
        problem = "an integer of more than 4,300 digits" if "integer string conversion" in str(exc) else str(exc)
        raise SpecError(f"invalid YAML value: {problem[:200]}", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"invalid YAML: {problem}",
            source=source,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    reader = _Reader(source, _line_index(root, source), tolerance or {})
    if data is None:
        raise reader.error((), "the file is empty; expected a spec (a mapping with `function:`)")
    if not isinstance(data, dict):
        raise reader.error((), f"expected a mapping with `function:` or `specs:`, got {_kind(data)}")
    if "specs" in data:
        extra = sorted(set(data) - {"specs"})
        if extra:
            raise reader.error(
                (extra[0],),
                "a file with `specs:` holds nothing else at the top level",
                hint="move this key into each spec under `specs:`",
            )
        items = data["specs"]
        if not isinstance(items, list) or not items:
            raise reader.error(("specs",), f"expected a non-empty list of specs, got {_kind(items)}")
        specs = [reader.spec(item, ("specs", i)) for i, item in enumerate(items)]
    else:
        specs = [reader.spec(data, ())]
    return _unique_names(specs, reader)


def _unique_names(specs: list[Spec], reader: _Reader) -> list[Spec]:
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise reader.error(
                ("specs", i, "name"),
                f"name `{spec.name}` is used by spec {seen[spec.name]} too",
                hint="give each spec in a file a distinct `name:`",
            )
        seen[spec.name] = i
    return specs


def _line_index(root: yaml.Node | None, source: str | None) -> dict[tuple[Any, ...], int]:
    """Map each key path to its line, and reject duplicate keys (safe_load keeps the last)."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    raise SpecError(
                        f"key `{key}` appears twice",
                        source=source,
                        key=_format_path((*path, key)),
                        line=key_node.start_mark.line + 1,
                    )
                seen.add(key)
                walk(value_node, (*path, key))
                lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _format_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short_int(value: float) -> str:
    """A number short enough for one line: 10**100 is `1e+100`, not a hundred digits."""
    if abs(value) < 10**20:
        return f"{value:,}"
    try:
        return f"{float(value):.3g}"
    except OverflowError:  # an int beyond float's range (str() refuses past 4,300 digits)
        return f"an integer of {int(value).bit_length():,} bits"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({_short_int(value)})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean `{close[0]}`? " if close else ""


class _Reader:
    """Validates the parsed YAML, naming the file, line and key path in every error."""

    def __init__(self, source: str | None, lines: dict[tuple[Any, ...], int], tolerance: Mapping[str, float]):
        self.source = source
        self.lines = lines
        self.tolerance_defaults = dict(tolerance)

    def error(self, path: tuple[Any, ...], message: str, *, hint: str | None = None) -> SpecError:
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        return SpecError(message, source=self.source, key=_format_path(path) or None, line=line, hint=hint)

    def check_keys(self, value: dict, path: tuple[Any, ...], allowed: Sequence[str]) -> None:
        for key in value:
            if key not in allowed:
                raise self.error(
                    (*path, key),
                    f"unknown key. {_suggest(str(key), allowed)}Allowed here: {', '.join(allowed)}",
                )

    def mapping(self, value: Any, path: tuple[Any, ...], what: str) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"expected {what}, got {_kind(value)}")
        return value

    def integer(
        self, value: Any, path: tuple[Any, ...], *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"expected an integer >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(path, f"expected an integer <= {maximum:,}, got {_short_int(value)}")
        return value

    def number(
        self, value: Any, path: tuple[Any, ...], *, positive: bool = False, minimum: float | None = None
    ) -> float:
        # YAML 1.1 reads `1e-6` (no dot) as a string: accept numeric strings for numbers.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.error(path, f"expected a number, got {_kind(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(path, f"expected a number, got {_kind(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise self.error(path, f"expected a finite number, got {_kind(value)}") from None
        if not math.isfinite(value):
            raise self.error(path, f"expected a finite number, got {value}")
        if positive and value <= 0:
            raise self.error(path, f"expected a number > 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"expected a number >= {minimum:g}, got {value:g}")
        return value

    def spec(self, raw: Any, path: tuple[Any, ...]) -> Spec:
        raw = self.mapping(raw, path, "a spec (a mapping with `function:`)")
        self.check_keys(raw, path, SPEC_KEYS)
        if "function" not in raw:
            raise self.error(
                path,
                "missing `function:`",
                hint="name the Function under test, e.g. `function: mypkg.losses.MyLoss`",
            )
        function = raw["function"]
        if not isinstance(function, str) or not function.strip():
            raise self.error(
                (*path, "function"),
                f"expected a dotted path or file.py:Name, got {_kind(function)}",
            )
        function = function.strip()
        name = raw.get("name", function.replace(":", ".").rsplit(".", 1)[-1])
        if not isinstance(name, str) or not name.strip():
            raise self.error((*path, "name"), f"expected a non-empty string, got {_kind(name)}")
        if any(char in name.strip() for char in "\n\r\t"):
            raise self.error((*path, "name"), "a name is one line: no newlines or tabs")
        seed = self.integer(raw.get("seed", 0), (*path, "seed"), minimum=0, maximum=INT64_RANGE[1])
        dims = self.dims(raw.get("dims", {}), (*path, "dims"))
        args_given = "args" in raw
        args = self.args(raw.get("args", {}), (*path, "args"), dims) if args_given else {}
        tolerance = self.tolerance(raw.get("tolerance", {}), (*path, "tolerance"))
        module_kwargs = self.mapping(
            raw.get("module_kwargs", {}), (*path, "module_kwargs"), "a mapping of keyword arguments"
        )
        checks, check_options = self.checks(raw.get("checks", {}), (*path, "checks"), dims, args)
        dtypes = self.dtypes(raw["dtypes"], (*path, "dtypes")) if "dtypes" in raw else None
        reference = raw.get("reference")
        if reference is not None and (not isinstance(reference, str) or not reference.strip()):
            raise self.error((*path, "reference"), f"expected a dotted path to a callable, got {_kind(reference)}")
        reference_kwargs = self.mapping(
            raw.get("reference_kwargs", {}), (*path, "reference_kwargs"), "a mapping of keyword arguments"
        )
        if reference_kwargs and reference is None:
            raise self.error((*path, "reference_kwargs"), "given without `reference:`")
        allow_unverified = raw.get("allow_unverified_gradients")
        if allow_unverified is not None and not isinstance(allow_unverified, bool):
            raise self.error(
                (*path, "allow_unverified_gradients"), f"expected true or false, got {_kind(allow_unverified)}"
            )
        world_size, combine = self.distributed(raw, path, dims, args)
        budget = self.number(raw["budget"], (*path, "budget"), positive=True) if "budget" in raw else None
        return Spec(
            function=function,
            name=name.strip(),
            args=args,
            dims=dims,
            seed=seed,
            tolerance=tolerance,
            module_kwargs=dict(module_kwargs),
            checks=checks,
            check_options=check_options,
            dtypes=dtypes,
            reference=reference.strip() if reference else None,
            reference_kwargs=dict(reference_kwargs),
            source=self.source,
            line=self.lines.get(path),
            key_lines={
                _format_path(key[len(path) :]): line
                for key, line in self.lines.items()
                if key[: len(path) + 1] == (*path, "args") and len(key) <= len(path) + 2
            },
            args_given=args_given,
            allow_unverified_gradients=allow_unverified,
            world_size=world_size,
            combine=combine,
            budget=budget,
        )

    def distributed(
        self, raw: dict, path: tuple[Any, ...], dims: Mapping[str, tuple[int, ...]], args: Mapping[str, Arg]
    ) -> tuple[tuple[int, ...] | None, str | None]:
        """`world_size:`, `combine:` and the args' `shard:` keys, which only make sense together."""
        world_size = None
        if "world_size" in raw:
            value = raw["world_size"]
            where = (*path, "world_size")
            if isinstance(value, list):
                if not value:
                    raise self.error(where, "a sweep needs at least one world size")
                world_size = tuple(self.integer(v, (*where, i), minimum=1) for i, v in enumerate(value))
                if len(set(world_size)) != len(world_size):
                    raise self.error(where, f"a size appears twice in the sweep {list(world_size)}")
            else:
                world_size = (self.integer(value, where, minimum=1),)
        combine = raw.get("combine")
        if combine is not None and combine not in COMBINES:
            raise self.error((*path, "combine"), f"expected one of {', '.join(COMBINES)}, got {_kind(combine)}")
        if combine is not None and world_size is None:
            raise self.error((*path, "combine"), "given without `world_size:`")
        for name, arg in args.items():
            if not isinstance(arg, TensorArg) or arg.shard is None:
                continue
            where = (*path, "args", name, "shard")
            if world_size is None:
                raise self.error(where, "given without `world_size:`", hint="add e.g. `world_size: 4` to the spec")
            self.shard_fits(arg, world_size, dims, where)
        return world_size, combine

    def shard_fits(
        self, arg: TensorArg, world_size: tuple[int, ...], dims: Mapping[str, tuple[int, ...]], where: tuple[Any, ...]
    ) -> None:
        assert arg.shard is not None
        if arg.shard >= len(arg.shape):
            raise self.error(where, f"dim {arg.shard} does not exist: the shape {list(arg.shape)} has {len(arg.shape)}")
        size = arg.shape[arg.shard]
        for value in dims[size] if isinstance(size, str) else (size,):
            for ranks in world_size:
                if value % ranks:
                    named = f" ({size})" if isinstance(size, str) else ""
                    raise self.error(
                        where,
                        f"dim {arg.shard} has size {value}{named}, which does not divide by world_size {ranks}",
                        hint="choose sizes that are multiples of every world size",
                    )

    def checks(
        self,
        raw: Any,
        path: tuple[Any, ...],
        dims: Mapping[str, tuple[int, ...]],
        args: Mapping[str, Arg],
    ) -> tuple[dict[str, bool], dict[str, dict[str, Any]]]:
        raw = self.mapping(raw, path, "a mapping of check ids to true, false or options")
        self.check_keys(raw, path, CHECK_IDS)
        enabled: dict[str, bool] = {}
        options: dict[str, dict[str, Any]] = {}
        for check_id, value in raw.items():
            where = (*path, check_id)
            if isinstance(value, bool):
                enabled[check_id] = value
                continue
            if check_id not in CHECK_OPTIONS:
                raise self.error(where, f"expected true or false, got {_kind(value)}")
            value = self.mapping(value, where, f"true, false or options ({', '.join(CHECK_OPTIONS[check_id])})")
            self.check_keys(value, where, CHECK_OPTIONS[check_id])
            enabled[check_id] = True
            options[check_id] = {
                key: self.check_option(check_id, key, item, (*where, key), dims, args) for key, item in value.items()
            }
        return enabled, options

    def check_option(
        self,
        check_id: str,
        key: str,
        value: Any,
        path: tuple[Any, ...],
        dims: Mapping[str, tuple[int, ...]],
        args: Mapping[str, Arg],
    ) -> Any:
        kind = option_kind(check_id, key)
        if kind is OptionKind.NUMBER:
            return self.number(value, path, positive=True)
        names = dims if kind is OptionKind.DIMS else args
        what = "dim" if kind is OptionKind.DIMS else "argument"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(path, f"expected a list of {what} names, got {_kind(value)}")
        for i, name in enumerate(value):
            if name not in names and (kind is OptionKind.DIMS or args):
                known = ", ".join(names) or "none"
                raise self.error((*path, i), f"unknown {what} `{name}`. {_suggest(name, list(names))}Known: {known}")
        return tuple(value)

    def dtypes(self, raw: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error(path, f"expected a non-empty list of dtypes, got {_kind(raw)}")
        out = []
        for i, name in enumerate(raw):
            if not isinstance(name, str):
                raise self.error((*path, i), f"expected a dtype name, got {_kind(name)}")
            dtype = DTYPE_ALIASES.get(name.removeprefix("torch."), name.removeprefix("torch."))
            if dtype not in FLOAT_DTYPES:
                raise self.error((*path, i), f"expected a floating dtype ({', '.join(FLOAT_DTYPES)}), got `{name}`")
            out.append(dtype)
        return tuple(out)

    def dims(self, raw: Any, path: tuple[Any, ...]) -> dict[str, tuple[int, ...]]:
        raw = self.mapping(raw, path, "a mapping of dim names to sizes, e.g. {N: 6, C: 5}")
        dims: dict[str, tuple[int, ...]] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise self.error((*path, name), "a dim name must be an identifier like N or C")
            if isinstance(value, list):
                if not value:
                    raise self.error((*path, name), "a sweep needs at least one size")
                sizes = tuple(
                    self.integer(v, (*path, name, i), minimum=1, maximum=MAX_DIM) for i, v in enumerate(value)
                )
                if len(set(sizes)) != len(sizes):
                    raise self.error((*path, name), f"a size appears twice in the sweep {list(sizes)}")
            else:
                sizes = (self.integer(value, (*path, name), minimum=1, maximum=MAX_DIM),)
            dims[name] = sizes
        cases = math.prod(len(sizes) for sizes in dims.values())
        if cases > MAX_CASES_PER_SPEC:
            raise self.error(path, f"the sweep makes {cases:,} cases, more than {MAX_CASES_PER_SPEC:,}")
        return dims

    def args(self, raw: Any, path: tuple[Any, ...], dims: Mapping[str, tuple[int, ...]]) -> dict[str, Arg]:
        raw = self.mapping(raw, path, "a mapping of forward's parameter names to arguments")
        args: dict[str, Arg] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise self.error((*path, name), "an argument name must be a Python identifier")
            if isinstance(value, dict):
                args[name] = self.tensor(value, (*path, name), dims)
            else:
                self.plain_value(value, (*path, name))
                args[name] = ValueArg(value)
        return args

    def plain_value(self, value: Any, path: tuple[Any, ...]) -> None:
        """Integers passed to forward as they are must fit torch's int64."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
                raise self.error(path, f"{_short_int(value)} does not fit a 64-bit integer")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.plain_value(item, (*path, i))
        elif isinstance(value, dict):
            for key, item in value.items():
                self.plain_value(item, (*path, key))

    def tensor(self, raw: dict, path: tuple[Any, ...], dims: Mapping[str, tuple[int, ...]]) -> TensorArg:
        self.check_keys(raw, path, TENSOR_KEYS)
        if "shape" not in raw:
            raise self.error(
                path,
                "a tensor argument needs `shape:` (a list of sizes or dim names; [] for a scalar)",
            )
        shape_raw = raw["shape"]
        if not isinstance(shape_raw, list):
            raise self.error((*path, "shape"), f"expected a list of sizes, got {_kind(shape_raw)}")
        shape: list[int | str] = []
        for i, size in enumerate(shape_raw):
            shape.append(self.size(size, (*path, "shape", i), dims, minimum=1, maximum=MAX_DIM))

        dtype = raw.get("dtype", "float64")
        if not isinstance(dtype, str):
            raise self.error((*path, "dtype"), f"expected a dtype name, got {_kind(dtype)}")
        dtype = DTYPE_ALIASES.get(dtype.removeprefix("torch."), dtype.removeprefix("torch."))
        if dtype not in DTYPES:
            raise self.error(
                (*path, "dtype"),
                f"unknown dtype `{raw['dtype']}`. {_suggest(dtype, DTYPES)}Supported: {', '.join(DTYPES)}",
            )
        floating = dtype in FLOAT_DTYPES
        default_init = "normal" if floating else ("bernoulli" if dtype == "bool" else "randint")
        init = raw.get("init", default_init)
        if init not in INIT_PARAMS:
            raise self.error(
                (*path, "init"),
                f"unknown init `{init}`. {_suggest(str(init), list(INIT_PARAMS))}Supported: {', '.join(INIT_PARAMS)}",
            )
        for key in ("mean", "std", "low", "high", "p", "value"):
            if key in raw and key not in INIT_PARAMS[init]:
                allowed = ", ".join(INIT_PARAMS[init]) or "none"
                raise self.error(
                    (*path, key),
                    f"`{key}` does not apply to init `{init}` (its parameters: {allowed})",
                )
        if init in ("simplex", "log_simplex", "normal", "positive") and not floating:
            raise self.error((*path, "init"), f"init `{init}` makes floating values; dtype `{dtype}` is not floating")
        if init in ("simplex", "log_simplex") and not shape:
            raise self.error((*path, "shape"), f"init `{init}` needs at least one dim (the last sums to 1)")
        if dtype == "bool" and init not in ("bernoulli", "constant"):
            raise self.error((*path, "init"), "a bool tensor is filled by `bernoulli` or `constant`")

        requires_grad = raw.get("requires_grad", floating)
        if not isinstance(requires_grad, bool):
            raise self.error((*path, "requires_grad"), f"expected true or false, got {_kind(requires_grad)}")
        if requires_grad and not floating:
            raise self.error((*path, "requires_grad"), f"only floating tensors can require grad; dtype is `{dtype}`")
        shard = self.integer(raw["shard"], (*path, "shard"), minimum=0) if "shard" in raw else None

        values: dict[str, Any] = {}
        if "mean" in raw:
            values["mean"] = self.number(raw["mean"], (*path, "mean"))
        if "std" in raw:
            values["std"] = self.number(raw["std"], (*path, "std"), positive=True)
        if "p" in raw:
            p = self.number(raw["p"], (*path, "p"))
            if not 0.0 <= p <= 1.0:
                raise self.error((*path, "p"), f"expected a probability in [0, 1], got {p:g}")
            values["p"] = p
        if "value" in raw:
            values["value"] = self.number(raw["value"], (*path, "value"))
        for key in ("low", "high"):
            if key in raw:
                if init == "randint":
                    values[key] = self.size(raw[key], (*path, key), dims, minimum=INT64_RANGE[0])
                else:
                    values[key] = self.number(raw[key], (*path, key))
        if dtype in INT_RANGES:
            self._check_dtype_range(dtype, init, values, path, dims)
        if init == "randint":
            if "high" not in values:
                raise self.error(
                    (*path, "high"),
                    "randint needs `high` (exclusive), an integer or a dim name, e.g. `high: C`",
                )
            self._check_range(values.get("low", 0), values["high"], path, dims)
        if init == "uniform":
            self._check_range(values.get("low", 0.0), values.get("high", 1.0), path, dims)
        values.update(self.chosen_values(raw, path, init, floating))
        if dtype in INT_RANGES:
            self._check_chosen_range(dtype, values, path)
        tensor = TensorArg(
            shape=tuple(shape), dtype=dtype, init=init, requires_grad=requires_grad, shard=shard, **values
        )
        elements = math.prod(max(dims[s]) if isinstance(s, str) else s for s in shape)
        if elements > MAX_ELEMENTS:
            raise self.error(
                (*path, "shape"),
                f"{_short_int(elements)} elements ({_short_int(elements * ITEM_BYTES[dtype])} bytes) "
                "is more than any machine holds",
            )
        return tensor

    def _check_dtype_range(
        self, dtype: str, init: str, values: dict[str, Any], path: tuple[Any, ...], dims: Mapping[str, tuple[int, ...]]
    ) -> None:
        """Values an integer tensor is asked to hold must fit its dtype (uint8 would wrap mod 256)."""
        lo, hi = INT_RANGES[dtype]
        bounds = {"low": (lo, hi), "high": (lo + 1, hi + 1), "value": (lo, hi)}  # randint's high is exclusive
        for key, (least, most) in bounds.items():
            if key not in values:
                continue
            raw = values[key]
            for number in dims[raw] if isinstance(raw, str) else (raw,):
                if not least <= number <= most:
                    raise self.error(
                        (*path, key),
                        f"{_short_int(number)} is out of range for {dtype} ({lo:,}..{hi:,})",
                    )

    def _check_chosen_range(self, dtype: str, values: dict[str, Any], path: tuple[Any, ...]) -> None:
        """`values:` and `special.value` of an integer tensor must fit its dtype too."""
        lo, hi = INT_RANGES[dtype]
        chosen = [((*path, "values"), v) for v in values.get("choices") or ()]
        if values.get("special") is not None:
            chosen.append(((*path, "special", "value"), values["special"][0]))
        for where, number in chosen:
            if not lo <= number <= hi:
                raise self.error(where, f"{_short_int(number)} is out of range for {dtype} ({lo:,}..{hi:,})")

    def chosen_values(self, raw: dict, path: tuple[Any, ...], init: str, floating: bool) -> dict[str, Any]:
        """`values:` for `init: choice`, and `special: {value, fraction}` for any init."""
        out: dict[str, Any] = {}

        def number(value: Any, where: tuple[Any, ...]) -> float:
            number = self.number(value, where)
            if not floating and number != int(number):
                raise self.error(where, f"expected an integer for an integer tensor, got {number:g}")
            return number if floating else int(number)

        if init == "choice":
            raw_values = raw.get("values")
            if not isinstance(raw_values, list) or not raw_values:
                raise self.error((*path, "values"), "init `choice` needs `values:`, a non-empty list of numbers")
            out["choices"] = tuple(number(v, (*path, "values", i)) for i, v in enumerate(raw_values))
        elif "values" in raw:
            raise self.error((*path, "values"), f"`values` applies to init `choice`, not `{init}`")
        if "special" in raw:
            special = self.mapping(raw["special"], (*path, "special"), "a mapping {value: V, fraction: F}")
            self.check_keys(special, (*path, "special"), ("value", "fraction"))
            if "value" not in special:
                raise self.error((*path, "special"), "`special` needs `value:` (e.g. an ignore_index of -100)")
            fraction = self.number(special.get("fraction", 0.1), (*path, "special", "fraction"))
            if not 0.0 < fraction <= 1.0:
                raise self.error((*path, "special", "fraction"), f"expected a fraction in (0, 1], got {fraction:g}")
            out["special"] = (number(special["value"], (*path, "special", "value")), fraction)
        return out

    def _check_range(self, low: Any, high: Any, path: tuple[Any, ...], dims: Mapping[str, tuple[int, ...]]) -> None:
        def values(bound: Any) -> tuple[float, ...]:
            return tuple(dims[bound]) if isinstance(bound, str) else (bound,)

        for lo in values(low):
            for hi in values(high):
                if not hi > lo:
                    raise self.error(
                        (*path, "high"),
                        f"expected high > low, got low={lo:g}, high={hi:g}",
                    )

    def size(
        self,
        value: Any,
        path: tuple[Any, ...],
        dims: Mapping[str, tuple[int, ...]],
        *,
        minimum: int | None = 0,
        maximum: int | None = None,
    ) -> int | str:
        if isinstance(value, str):
            if value not in dims:
                known = ", ".join(dims) or "none defined"
                raise self.error(
                    path,
                    f"undefined dim `{value}`. {_suggest(value, list(dims))}Dims: {known}",
                    hint="define it under `dims:`, e.g. dims: {" + value + ": 8}",
                )
            return value
        return self.integer(value, path, minimum=minimum, maximum=maximum if maximum is not None else INT64_RANGE[1])

    def tolerance(self, raw: Any, path: tuple[Any, ...]) -> Tolerance:
        raw = self.mapping(raw, path, "a mapping with eps, atol, rtol, nondet_tol")
        self.check_keys(raw, path, TOLERANCE_KEYS)
        values = dict(self.tolerance_defaults)
        if "eps" in raw:
            values["eps"] = self.number(raw["eps"], (*path, "eps"), positive=True)
        for key in ("atol", "rtol", "nondet_tol"):
            if key in raw:
                values[key] = self.number(raw[key], (*path, key), minimum=0.0)
        return Tolerance(**values)


def find_spec_files(folder: str | Path) -> list[Path]:
    """Every .yaml/.yml file under a folder, sorted so runs are reproducible."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def spec_to_dict(spec: Spec, dims: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The spec as YAML-ready data (what `load_specs` reads back to an equal spec); `dims` pins the
    sizes to one point of the sweep."""
    data: dict[str, Any] = {"name": spec.name, "function": spec.function, "seed": spec.seed}
    sizes = dims if dims is not None else spec.dims
    if sizes:
        data["dims"] = {
            k: (list(v) if isinstance(v, tuple) and len(v) > 1 else (v[0] if isinstance(v, tuple) else v))
            for k, v in sizes.items()
        }
    if spec.args_given:
        args: dict[str, Any] = {}
        for name, arg in spec.args.items():
            if isinstance(arg, ValueArg):
                args[name] = arg.value
                continue
            tensor: dict[str, Any] = {"shape": list(arg.shape), "dtype": arg.dtype, "init": arg.init}
            tensor["requires_grad"] = arg.requires_grad
            for key in ("mean", "std", "low", "high", "p", "value", "shard"):
                if getattr(arg, key) is not None:
                    tensor[key] = getattr(arg, key)
            if arg.choices is not None:
                tensor["values"] = list(arg.choices)
            if arg.special is not None:
                tensor["special"] = {"value": arg.special[0], "fraction": arg.special[1]}
            args[name] = tensor
        data["args"] = args
    tolerance = {
        k: getattr(spec.tolerance, k) for k in TOLERANCE_KEYS if getattr(spec.tolerance, k) != getattr(Tolerance(), k)
    }
    if tolerance:
        data["tolerance"] = tolerance
    if spec.module_kwargs:
        data["module_kwargs"] = dict(spec.module_kwargs)
    if spec.checks:
        data["checks"] = {
            k: (dict(spec.check_options[k]) if k in spec.check_options else v) for k, v in spec.checks.items()
        }
        for options in data["checks"].values():
            if isinstance(options, dict):
                for key, value in options.items():
                    if isinstance(value, tuple):
                        options[key] = list(value)
    if spec.dtypes:
        data["dtypes"] = list(spec.dtypes)
    if spec.reference:
        data["reference"] = spec.reference
    if spec.reference_kwargs:
        data["reference_kwargs"] = dict(spec.reference_kwargs)
    if spec.world_size is not None:
        data["world_size"] = list(spec.world_size) if len(spec.world_size) > 1 else spec.world_size[0]
    if spec.combine is not None:
        data["combine"] = spec.combine
    return data

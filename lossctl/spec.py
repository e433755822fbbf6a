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

from lossctl.errors import SpecError

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
}
TENSOR_KEYS = ("shape", "dtype", "requires_grad", "init", "mean", "std", "low", "high", "p", "value")
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
)
TOLERANCE_KEYS = ("eps", "atol", "rtol", "nondet_tol")

CHECK_IDS = (
    "forward",
    "backward",
    "raw_backward",
    "gradcheck",
    "gradient_scaled",
    "gradient_blocks",
    "linearity",
    "needs_input_grad",
    "determinism",
    "grad_output_intact",
    "inplace",
    "noncontiguous",
    "edge_sizes",
    "double_backward",
    "forward_ad",
    "vmap",
    "low_precision",
    "reference",
    "stability",
    "compile",
)
"""Every check id, in run order (the registry in lossctl.checks must match: a test says so)."""

CHECK_OPTIONS: dict[str, tuple[str, ...]] = {
    "edge_sizes": ("exclude_dims",),
    "stability": ("exclude_args",),
    "low_precision": ("factor",),
    "reference": ("factor", "floor"),
}
"""Options a check takes under `checks: {id: {...}}`; other checks take only true/false."""

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
    args_given: bool = True
    """False when `args:` was absent: inputs are then built from forward's signature."""

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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file ({exc})", source=str(path)) from None
    return load_specs(text, source=str(path), tolerance=tolerance)


def load_specs(
    stream: str | IO[str], *, source: str | None = None, tolerance: Mapping[str, float] | None = None
) -> list[Spec]:
    """Parse and validate specs from YAML text; `source` names the file in error messages."""
    text = stream if isinstance(stream, str) else stream.read()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
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

    def integer(self, value: Any, path: tuple[Any, ...], *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"expected an integer >= {minimum}, got {value}")
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
        value = float(value)
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
        seed = self.integer(raw.get("seed", 0), (*path, "seed"), minimum=0)
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
            args_given=args_given,
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
        if key in ("factor", "floor"):
            return self.number(value, path, positive=True)
        names = dims if key == "exclude_dims" else args
        what = "dim" if key == "exclude_dims" else "argument"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(path, f"expected a list of {what} names, got {_kind(value)}")
        for i, name in enumerate(value):
            if name not in names and (key == "exclude_dims" or args):
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
                sizes = tuple(self.integer(v, (*path, name, i), minimum=1) for i, v in enumerate(value))
                if len(set(sizes)) != len(sizes):
                    raise self.error((*path, name), f"a size appears twice in the sweep {list(sizes)}")
            else:
                sizes = (self.integer(value, (*path, name), minimum=1),)
            dims[name] = sizes
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
                args[name] = ValueArg(value)
        return args

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
            shape.append(self.size(size, (*path, "shape", i), dims))

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
                    values[key] = self.size(raw[key], (*path, key), dims, minimum=None)
                else:
                    values[key] = self.number(raw[key], (*path, key))
        if init == "randint":
            if "high" not in values:
                raise self.error(
                    (*path, "high"),
                    "randint needs `high` (exclusive), an integer or a dim name, e.g. `high: C`",
                )
            self._check_range(values.get("low", 0), values["high"], path, dims)
        if init == "uniform":
            self._check_range(values.get("low", 0.0), values.get("high", 1.0), path, dims)
        return TensorArg(shape=tuple(shape), dtype=dtype, init=init, requires_grad=requires_grad, **values)

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
        return self.integer(value, path, minimum=minimum)

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
            for key in ("mean", "std", "low", "high", "p", "value"):
                if getattr(arg, key) is not None:
                    tensor[key] = getattr(arg, key)
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
    return data

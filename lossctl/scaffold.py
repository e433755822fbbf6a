"""`lossctl init` and `lossctl list`: a first spec written from forward's signature, and the
Functions and Modules a module defines with the specs that cover them. Never prints."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lossctl.errors import LoadError, SpecError
from lossctl.loader import load_object, parse_reference
from lossctl.target import Target, TargetKind, classify

TARGETS = ("target", "targets", "label", "labels", "y")
CLASS_WORDS = ("entropy", "nll", "focal", "class", "softmax", "logit")
"""Words in a Function's name or parameters that say its targets are class indices."""


def snake_case(name: str) -> str:
    """`MaskedMSELoss` → `masked_mse_loss`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def reference_from(spec_dir: Path, reference: str) -> str:
    """The reference as a spec in `spec_dir` must write it: a file path relative to that folder."""
    ref = parse_reference(reference)
    if ref.file is None:
        return reference
    return f"{Path(os.path.relpath(ref.file.resolve(), spec_dir.resolve())).as_posix()}:{ref.attr}"


def spec_text(reference: str, target: Target, *, as_given: str | None = None) -> str:
    """A YAML spec for `target` (named `reference` in the file; `as_given` on the command
    line): every forward parameter given a sensible input."""
    parameters = [
        p
        for p in (target.parameters or ())
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    names = [p.name.lower() for p in parameters]
    classes = any(word in target.name.lower() for word in CLASS_WORDS) or "logits" in names or "ignore_index" in names
    ignore = next((p for p in parameters if p.name == "ignore_index"), None)
    ignore_value = ignore.default if ignore is not None and isinstance(ignore.default, int) else -100
    lines = [
        f"# Written by `lossctl init {as_given or reference}`: adjust dims, shapes and dtypes to your use.",
        f"function: {reference}",
        "dims: {N: 8, C: 5}",
        "args:",
    ]
    for p in parameters:
        line = _argument(p, classes=classes, ignore_index=ignore_value if ignore is not None else None)
        if line is not None:
            lines.append(f"  {p.name}: {line}")
    if lines[-1] == "args:":
        lines[-1] = "args: {}"
    if target.kind is TargetKind.MODULE:
        required = _required_init_arguments(target.obj)
        guessed = ", ".join(f"{name}: {value}" for name, value in required if value is not None)
        unknown = [name for name, value in required if value is None]
        note = "the Module's constructor arguments"
        if guessed:
            note = "required by __init__, guessed from its annotations: check them"
        if unknown:
            note += f"; also required, fill in: {', '.join(unknown)}"
        lines.append(f"module_kwargs: {{{guessed}}}   # {note}")
    return "\n".join(lines) + "\n"


INIT_GUESSES = {int: "5", float: "1.0", bool: "false", str: "''"}
"""A first value for a required constructor argument, by its annotation (YAML)."""


def _required_init_arguments(cls: type) -> list[tuple[str, str | None]]:
    """The Module's required constructor arguments (no default), each with a first value to edit
    when its annotation suggests one (None: no guess): `module_kwargs: {}` would not build it."""
    try:
        signature = inspect.signature(cls)
        hints = inspect.get_annotations(cls.__init__, eval_str=True)
    except (TypeError, ValueError, NameError):  # a builtin, or annotations that do not resolve
        try:
            signature, hints = inspect.signature(cls), {}
        except (TypeError, ValueError):
            return []
    required = []
    for p in signature.parameters.values():
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            annotation = hints.get(p.name, p.annotation)
            required.append((p.name, INIT_GUESSES.get(annotation)))
    return required


def _argument(p: inspect.Parameter, *, classes: bool, ignore_index: int | None) -> str | None:
    """The spec entry for one parameter, or None to leave it to its default."""
    name = p.name.lower()
    default = p.default
    if name == "ignore_index":
        return str(ignore_index)
    if name == "reduction":
        return str(default) if isinstance(default, str) else "mean"
    if name in TARGETS:
        if classes:
            special = f", special: {{value: {ignore_index}, fraction: 0.25}}" if ignore_index is not None else ""
            return f"{{shape: [N], dtype: int64, high: C{special}}}"
        return "{shape: [N, C]}"
    if "mask" in name:
        return "{shape: [N], dtype: bool, init: bernoulli, p: 0.75}"
    if name in ("weight", "weights", "class_weight", "class_weights"):
        return "{shape: [C], init: positive, requires_grad: false}"
    if default is not inspect.Parameter.empty:
        if default is None or not isinstance(default, bool | int | float | str):
            return None  # forward's own default is used
        return _yaml_scalar(default)
    if (plain := _PLAIN_BY_ANNOTATION.get(_annotation_name(p.annotation))) is not None:
        return plain  # `delta: float` is a number, not a tensor to differentiate
    return "{shape: [N, C]}"  # predictions, logits and any other required parameter: floats


_PLAIN_BY_ANNOTATION = {"float": "1.0", "int": "1", "bool": "false", "str": "mean"}
"""A required parameter annotated with a plain type gets a plain value (edit it to what you use)."""


def _annotation_name(annotation: object) -> str:
    """`float` for `float` or the string "float" (postponed annotations)."""
    if isinstance(annotation, str):
        return annotation.strip()
    return getattr(annotation, "__name__", "")


def _yaml_scalar(value: bool | int | float | str) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def default_spec_path(configs: Path, target: Target) -> Path:
    return configs / f"{snake_case(target.name.split('.')[-1])}.yaml"


def load_target(reference: str) -> Target:
    obj, _ = load_object(reference)
    return classify(obj, reference)


# --------------------------------------------------------------------------- list


@dataclass(frozen=True)
class Found:
    """A Function or Module defined in a module, and the spec files that name it."""

    name: str
    reference: str
    kind: str
    specs: tuple[str, ...]


def find_targets(where: str, spec_files: Sequence[Path]) -> list[Found]:
    """The Function and Module subclasses `where` (a module name or a .py file) defines."""
    module, prefix = _module(where)
    import torch

    covered = _coverage(spec_files)
    found = []
    for name, value in sorted(vars(module).items()):
        if not inspect.isclass(value) or name.startswith("_") or value.__module__ != module.__name__:
            continue
        if issubclass(value, torch.autograd.Function):
            kind = "Function"
        elif issubclass(value, torch.nn.Module):
            kind = "Module"
        else:
            continue
        reference = f"{prefix}:{name}" if prefix.endswith(".py") else f"{prefix}.{name}"
        key = parse_reference(reference).key()
        found.append(Found(name, reference, kind, tuple(covered.get(key, ()))))
    return found


def _module(where: str) -> tuple[ModuleType, str]:
    from lossctl.loader import _import_file, _import_module, ensure_cwd_importable

    ensure_cwd_importable()
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise LoadError(f"no such file: {where}")
        return _import_file(path.resolve()), where
    if not all(part.isidentifier() for part in where.split(".")):
        raise LoadError(f"`{where}` is neither a module name nor a .py file", hint="e.g. mypkg.losses or losses.py")
    try:
        return _import_module(where, where), where
    except LoadError as error:
        raise LoadError(f"cannot import `{where}`: {error.message}", hint=error.hint) from None


def _coverage(spec_files: Sequence[Path]) -> dict[tuple[str, ...], list[str]]:
    from lossctl.spec import load_spec_file

    covered: dict[tuple[str, ...], list[str]] = {}
    for file in spec_files:
        try:
            specs = load_spec_file(file)
        except SpecError:
            continue
        for spec in specs:
            try:
                key = parse_reference(spec.function, base_dir=spec.base_dir).key()
            except LoadError:
                continue
            covered.setdefault(key, []).append(str(file))
    return covered

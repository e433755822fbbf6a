"""Resolve a TARGET reference (`pkg.mod.Class`, `pkg.mod:Class`, `file.py:Class`) to an object."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lossctl.errors import LoadError


@dataclass(frozen=True)
class Reference:
    """A parsed TARGET: a module (by name or by file) and an attribute path inside it."""

    module: str
    attr: str | None
    """None when the split is not known yet (`a.b.c` may be module `a.b` + attr `c`)."""
    file: Path | None = None

    def key(self) -> tuple[str, ...]:
        """A comparable form: `a.b:C` and `a.b.C` are the same reference."""
        if self.file is not None:
            resolved = self.file.resolve()
            try:  # a file under the current directory is also importable by its dotted name
                relative = resolved.relative_to(Path.cwd().resolve())
            except ValueError:
                return ("file", str(resolved), self.attr or "")
            return ("dotted", ".".join((*relative.with_suffix("").parts, self.attr or "")))
        dotted = self.module if self.attr is None else f"{self.module}.{self.attr}"
        return ("dotted", dotted)


def parse_reference(text: str, *, base_dir: Path | None = None) -> Reference:
    """Split a TARGET string; relative `.py` paths are resolved against `base_dir` (default cwd)."""
    text = text.strip()
    module, sep, attr = text.rpartition(":")
    if sep and module.endswith(".py"):
        path = Path(module)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        if not attr:
            raise LoadError(f"`{text}` names a file but no object", hint="write it as path/to/file.py:ClassName")
        return Reference(module=path.stem, attr=attr, file=path)
    if text.endswith(".py"):
        raise LoadError(
            f"`{text}` is a file but names no object in it",
            hint=f"write it as {text}:ClassName",
        )
    if sep:
        if not module or not attr:
            raise LoadError(f"`{text}` is not a valid reference", hint="use pkg.module:ClassName")
        return Reference(module=module, attr=attr)
    if not all(part.isidentifier() for part in text.split(".")):
        raise LoadError(
            f"`{text}` is not a dotted path, a spec file or a folder",
            hint="use pkg.module.ClassName, pkg.module:ClassName, path/to/file.py:ClassName, "
            "a .yaml spec or a folder of specs",
        )
    return Reference(module=text, attr=None)


def load_object(text: str, *, base_dir: Path | None = None) -> tuple[Any, Reference]:
    """Import the object a TARGET names; raise LoadError saying what was tried and how to fix it."""
    ref = parse_reference(text, base_dir=base_dir)
    ensure_cwd_importable()
    if ref.file is not None:
        module = _import_file(ref.file)
        return _get_attr(module, ref.attr or "", text), ref
    if ref.attr is not None:
        try:
            module = _import_module(ref.module, text)
        except _NotFound as exc:
            raise LoadError(
                f"cannot load `{text}`: no module named `{ref.module}` ({exc.error})",
                hint="check the spelling, install the package, or run lossctl from the folder "
                "that holds it (the current directory is importable)",
            ) from None
        return _get_attr(module, ref.attr, text), ref
    # `a.b.C`: the longest importable prefix is the module, the rest are attributes.
    parts = ref.module.split(".")
    tried: list[str] = []
    first_error: ModuleNotFoundError | None = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        tried.append(module_name)
        try:
            module = _import_module(module_name, text)
        except _NotFound as exc:
            first_error = first_error or exc.error
            continue
        attr = ".".join(parts[cut:])
        return _get_attr(module, attr, text), Reference(module=module_name, attr=attr)
    if len(parts) == 1:
        raise LoadError(
            f"cannot load `{text}`: a dotted path needs a module and a name",
            hint="use pkg.module.ClassName (the current directory is importable)",
        )
    raise LoadError(
        f"cannot load `{text}`: no module found (tried {', '.join(tried)}): {first_error}",
        hint="check the spelling, install the package, or run lossctl from the folder that "
        "holds it (the current directory is importable)",
    )


class _NotFound(LoadError):
    def __init__(self, name: str, error: ModuleNotFoundError):
        super().__init__(f"no module named `{name}`")
        self.error = error


def ensure_cwd_importable() -> None:
    # `python -m` puts the current directory first on sys.path; the console script does not.
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import_module(name: str, text: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if name == missing or name.startswith(missing + "."):
            raise _NotFound(name, exc) from None
        raise _user_import_error(text, name, exc) from None
    except (Exception, SystemExit) as exc:  # the user's module raised (or exited) while importing
        raise _user_import_error(text, name, exc) from None


def _import_file(path: Path) -> ModuleType:
    if path.is_dir():
        raise LoadError(f"cannot load `{path}`: is a folder, not a Python file", hint="name a .py file")
    if not path.is_file():
        raise LoadError(
            f"cannot load `{path}`: no such file",
            hint="check the path (in a spec, relative paths start at the spec file's folder)",
        )
    resolved = path.resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == resolved:
            return module
    # A name unique to the file, so two `losses.py` in different folders do not collide.
    name = f"lossctl_user_{path.stem}_{abs(hash(str(resolved))):x}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load `{path}`: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Let the file import its neighbours, as `python file.py` would.
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise _user_import_error(str(path), str(path), exc) from None
    return module


def _user_import_error(text: str, module: str, exc: BaseException) -> LoadError:
    return LoadError(
        f"cannot load `{text}`: importing `{module}` raised {type(exc).__name__}: {exc}",
        hint="the traceback below is from your module",
        details=format_user_traceback(exc),
    )


def _get_attr(module: ModuleType, attr: str, text: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            candidates = function_classes(module)
            listing = ", ".join(candidates) if candidates else "none"
            raise LoadError(
                f"cannot load `{text}`: module `{module.__name__}` has no attribute `{attr}`",
                hint=f"Function subclasses in `{module.__name__}`: {listing}",
            ) from None
    return obj


def function_classes(module: ModuleType) -> list[str]:
    """Names of the torch.autograd.Function subclasses a module defines (for error messages)."""
    import torch

    names = []
    for name, value in vars(module).items():
        if (
            inspect.isclass(value)
            and issubclass(value, torch.autograd.Function)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        ):
            names.append(name)
    return sorted(names)


def format_user_traceback(exc: BaseException) -> str:
    """The user's traceback, without lossctl's and importlib's own frames above it."""
    frames = traceback.extract_tb(exc.__traceback__)
    package = str(Path(__file__).resolve().parent)
    examples = str(Path(package) / "examples")

    def ours(frame: traceback.FrameSummary) -> bool:
        name = frame.filename
        if name.startswith(examples):
            return False
        return name.startswith(package) or "importlib" in name

    keep = [f for f in frames if not ours(f)]
    if not keep:  # a SyntaxError in the file's text, or a call lossctl made (a constructor's arguments)
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(keep)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def describe_exception(error: BaseException) -> str:
    """`Type: message (at file.py:12 in fn)`, locating the innermost frame outside torch and lossctl.
    Allocation failures are named as running out of memory; tensors on two devices get their
    likely cause."""
    from lossctl.device import mismatch_hint  # imports torch, which loading a spec does not need

    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    oom = type(error).__name__ == "OutOfMemoryError" or "can't allocate memory" in message or "out of memory" in message
    if oom and "] err == 0. " in message:
        message = message.split("] err == 0. ", 1)[1]  # drop the allocator's enforce prefix
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if oom:
        text = f"out of memory — {text}"
    where = _user_frame(error)
    text = f"{text} (at {where})" if where else text
    return f"{text} — {hint}" if (hint := mismatch_hint(message)) else text


def _user_frame(error: BaseException) -> str | None:
    return user_location(traceback.extract_tb(error.__traceback__))


def user_location(frames: list[traceback.FrameSummary]) -> str | None:
    """`file.py:12 in fn` for the innermost frame that is the user's (not torch's or lossctl's)."""
    found = None
    for frame in frames:
        if _is_users(frame.filename):
            found = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return found


def is_user_file(filename: str) -> bool:
    """Whether a source file is the user's (not torch's, not lossctl's own)."""
    return _is_users(filename)


@functools.lru_cache(maxsize=1024)
def _is_users(filename: str) -> bool:
    """Whether a source file is the user's: not lossctl's own (its examples count as the user's),
    not torch's, not importlib's."""
    import torch

    if "importlib" in filename or filename.startswith("<frozen"):
        return False
    path = os.path.realpath(filename)
    package = os.path.dirname(os.path.realpath(__file__))
    examples = os.path.join(package, "examples") + os.sep
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
    if path.startswith(examples):
        return True
    return not (path.startswith(package + os.sep) or path.startswith(torch_dir))

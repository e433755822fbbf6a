"""Project configuration: `lossctl.yaml`, or `[tool.lossctl]` in pyproject.toml (no torch here).

Precedence, lowest first: lossctl's defaults < this file < each spec < command-line flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lossctl.catalogue import CHECK_IDS
from lossctl.errors import LossctlError, SpecError
from lossctl.spec import TOLERANCE_KEYS

CONFIG_KEYS = (
    "specs",
    "device",
    "checks",
    "skip",
    "tolerance",
    "timeout",
    "jobs",
    "allow_unverified_gradients",
    "budget",
)


class ConfigError(SpecError):
    """A project configuration file that cannot be used."""


@dataclass(frozen=True)
class ProjectConfig:
    specs: tuple[str, ...] = ("configs",)
    """Where specs live: what `lossctl check` runs with no TARGET (paths relative to the file)."""
    device: str | None = None
    checks: tuple[str, ...] | None = None
    """The checks a spec gets unless it says otherwise (default: every check but the opt-in ones)."""
    skip: tuple[str, ...] = ()
    tolerance: Mapping[str, float] = field(default_factory=dict)
    """Tolerance defaults for every spec (a spec's own `tolerance:` wins)."""
    timeout: float | None = None
    budget: float | None = None
    """Seconds a case may spend in its checks (a spec's `budget:` wins; --budget over both)."""
    jobs: str | None = None
    allow_unverified_gradients: bool = False
    """Accept runs where no check could verify a gradient value (e.g. a float32-only kernel)."""
    source: str | None = None
    root: Path = field(default_factory=Path.cwd)

    def spec_paths(self) -> list[str]:
        return [str(path) if (path := Path(p)).is_absolute() else str(self.root / p) for p in self.specs]


def load_config(directory: Path | None = None, explicit: Path | None = None) -> ProjectConfig:
    """The project's config: `explicit`, else lossctl.yaml, else pyproject.toml's [tool.lossctl] in
    `directory` (default: the current one), else the defaults."""
    directory = directory or Path.cwd()
    if explicit is not None:
        if not explicit.is_file():
            raise LossctlError(f"--config: no such file: {explicit}")
        return _from_file(explicit)
    for name in ("lossctl.yaml", "lossctl.yml"):
        if (directory / name).is_file():
            return _from_file(directory / name)
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        section = data.get("tool", {}).get("lossctl")
        if section is not None:
            return parse_config(section, source=f"{pyproject} [tool.lossctl]", root=directory)
    return ProjectConfig(root=directory)


def _from_file(path: Path) -> ProjectConfig:
    if path.suffix == ".toml":
        section = _read_toml(path).get("tool", {}).get("lossctl", {})
        return parse_config(section, source=f"{path} [tool.lossctl]", root=path.parent)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", source=str(path)) from None
    return parse_config(data or {}, source=str(path), root=path.parent)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise LossctlError(
                f"{path}: reading [tool.lossctl] on Python 3.10 needs tomli",
                hint="pip install tomli, or use lossctl.yaml",
            ) from None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}", source=str(path)) from None


def parse_config(data: Any, *, source: str, root: Path) -> ProjectConfig:
    def error(key: str, message: str) -> ConfigError:
        return ConfigError(message, source=source, key=key)

    if not isinstance(data, dict):
        raise ConfigError("expected a table/mapping of settings", source=source)
    for key in data:
        if key not in CONFIG_KEYS:
            raise error(str(key), f"unknown key. Allowed: {', '.join(CONFIG_KEYS)}")
    values: dict[str, Any] = {}
    if "specs" in data:
        specs = data["specs"]
        specs = [specs] if isinstance(specs, str) else specs
        if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
            raise error("specs", "expected a path or a list of paths (spec files or folders)")
        values["specs"] = tuple(specs)
    if "device" in data:
        if not isinstance(data["device"], str):
            raise error("device", "expected a device name (cpu, cuda, cuda:N, mps, auto)")
        values["device"] = data["device"]
    for key in ("checks", "skip"):
        if key in data:
            ids = data[key]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise error(key, "expected a list of check ids")
            unknown = [i for i in ids if i not in CHECK_IDS]
            if unknown:
                raise error(key, f"unknown check `{unknown[0]}`. Known: {', '.join(CHECK_IDS)}")
            values[key] = tuple(ids)
    if "tolerance" in data:
        tolerance = data["tolerance"]
        if not isinstance(tolerance, dict):
            raise error("tolerance", f"expected a mapping with {', '.join(TOLERANCE_KEYS)}")
        for key, value in tolerance.items():
            if key not in TOLERANCE_KEYS:
                raise error(f"tolerance.{key}", f"unknown key. Allowed: {', '.join(TOLERANCE_KEYS)}")
            number = _number(value)
            if number is None or number < 0:
                raise error(f"tolerance.{key}", f"expected a number >= 0, got {value!r}")
        values["tolerance"] = {k: _number(v) for k, v in tolerance.items()}
    if "timeout" in data:
        timeout = _number(data["timeout"])
        if timeout is None or timeout <= 0:
            raise error("timeout", f"expected seconds > 0, got {data['timeout']!r}")
        values["timeout"] = timeout
    if "budget" in data:
        budget = _number(data["budget"])
        if budget is None or not math.isfinite(budget) or budget <= 0:
            raise error("budget", f"expected seconds > 0, got {data['budget']!r}")
        values["budget"] = budget
    if "jobs" in data:
        jobs = data["jobs"]
        if not (jobs == "auto" or (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 0)):
            raise error("jobs", f"expected a count >= 0 or auto, got {jobs!r}")
        values["jobs"] = str(jobs)
    if "allow_unverified_gradients" in data:
        if not isinstance(data["allow_unverified_gradients"], bool):
            raise error("allow_unverified_gradients", "expected true or false")
        values["allow_unverified_gradients"] = data["allow_unverified_gradients"]
    return ProjectConfig(**values, source=source, root=root)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

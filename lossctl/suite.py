"""Turn the command line's TARGETs (spec files, folders, Function references) into jobs to run,
and select the ones a change touched."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossctl.errors import LoadError, SpecError, UsageError
from lossctl.loader import ensure_cwd_importable, parse_reference
from lossctl.paths import relative_path
from lossctl.spec import Spec, find_spec_files, load_spec_file

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Job:
    """One spec to run, with notes on how it was chosen (shown under the table)."""

    spec: Spec
    notes: tuple[str, ...] = ()
    searched: str | None = None
    """The folder searched in vain for a spec naming this Function (default inputs are used)."""
    target: Any = None
    """The object under test when the caller passed one (the Python API); else `spec.function`
    is imported."""


def collect(
    targets: Sequence[str],
    *,
    configs_dir: Path,
    tolerance: Mapping[str, float] | None = None,
    explicit: bool = True,
    invalid: list[SpecError] | None = None,
) -> list[Job]:
    """Jobs for every TARGET; with none, every spec under `configs_dir`. `explicit` is False when
    the targets are the project's default spec folders (a missing one is then explained as such).
    With `invalid`, a spec file that is not valid is appended there and the others still load;
    without, the first one raises."""

    def load(file: Path) -> list[Job]:
        try:
            return [Job(spec) for spec in load_spec_file(file, tolerance=tolerance)]
        except SpecError as error:
            if invalid is None:
                raise
            invalid.append(error)
            return []

    if not targets:
        targets = [str(configs_dir)]
        explicit = False
    jobs: list[Job] = []
    for target in targets:
        path = Path(target)
        if not explicit and not path.exists():
            raise UsageError(
                f"no TARGET given and no spec folder {path}",
                hint="pass a Function (pkg.mod.Class), a spec file or folder, or set `specs` in lossctl.yaml",
            )
        if path.is_dir():
            files = find_spec_files(path)
            if not files:
                raise UsageError(f"no .yaml or .yml spec files under {target}")
            for file in files:
                jobs.extend(load(file))
        elif path.suffix in SPEC_SUFFIXES:
            if not path.is_file():
                raise UsageError(f"no such spec file: {target}")
            jobs.extend(load(path))
        else:
            jobs.extend(jobs_for_reference(target, configs_dir=configs_dir, tolerance=tolerance))
    return jobs


def jobs_for_reference(reference: str, *, configs_dir: Path, tolerance: Mapping[str, float] | None = None) -> list[Job]:
    """The specs under `configs_dir` that name this Function, else one with default inputs."""
    key = parse_reference(reference).key()
    found: list[Job] = []
    invalid: list[str] = []
    if configs_dir.is_dir():
        for file in find_spec_files(configs_dir):
            try:
                specs = load_spec_file(file, tolerance=tolerance)
            except SpecError:
                invalid.append(str(file))
                continue
            for spec in specs:
                try:
                    if parse_reference(spec.function, base_dir=spec.base_dir).key() == key:
                        found.append(Job(spec, notes=(f"spec `{spec.name}` from {relative_path(file)}",)))
                except LoadError:
                    continue
    if found:
        return found
    notes = [f"skipped invalid spec files while looking for one: {', '.join(invalid)}"] if invalid else []
    spec = Spec(function=reference, name=reference.replace(":", ".").rsplit(".", 1)[-1], args_given=False)
    if tolerance:
        from dataclasses import replace

        spec = replace(spec, tolerance=replace(spec.tolerance, **tolerance))
    return [Job(spec, notes=tuple(notes), searched=relative_path(configs_dir))]


# --------------------------------------------------------------------------- --changed-since


def changed_files(ref: str, cwd: Path | None = None) -> set[Path]:
    """Files that differ from `ref` in the working tree (committed, staged or not) plus untracked
    ones, as absolute paths."""
    cwd = cwd or Path.cwd()

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise UsageError("--changed-since needs git, which is not installed") from None
        if done.returncode != 0:
            message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"git {args[0]} failed"
            if "not a git repository" in done.stderr:
                raise UsageError(f"--changed-since: {cwd} is not inside a git repository", hint="run from a clone")
            raise UsageError(f"--changed-since {ref}: {message}", hint="pass a branch, tag or commit, e.g. origin/main")
        return done.stdout

    root = Path(git("rev-parse", "--show-toplevel").strip())
    git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    names = git("diff", "--name-only", ref, "--").splitlines()  # relative to the repository root
    names += git("ls-files", "--others", "--exclude-standard", "--full-name", "--", str(root)).splitlines()
    return {(root / name).resolve() for name in names if name}


def function_source(spec: Spec) -> Path | None:
    """The file that defines a spec's Function, found without importing it where possible."""
    ensure_cwd_importable()
    try:
        ref = parse_reference(spec.function, base_dir=spec.base_dir)
    except LoadError:
        return None
    if ref.file is not None:
        return ref.file.resolve()
    candidates = [ref.module] if ref.attr is not None else []
    parts = ref.module.split(".")
    candidates += [".".join(parts[:cut]) for cut in range(len(parts) - 1, 0, -1)] if ref.attr is None else []
    for name in candidates:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if found is not None and found.origin and found.origin not in ("built-in", "frozen"):
            return Path(found.origin).resolve()
    return None


def filter_changed(jobs: Sequence[Job], ref: str) -> list[Job]:
    """The jobs whose spec file or Function source file changed since `ref`."""
    changed = changed_files(ref)
    kept = []
    for job in jobs:
        paths = [Path(job.spec.source).resolve()] if job.spec.source else []
        source = function_source(job.spec)
        if source is not None:
            paths.append(source)
        if any(path in changed for path in paths):
            kept.append(job)
    return kept

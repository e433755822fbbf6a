"""Turn the command line's TARGETs (spec files, folders, Function references) into jobs to run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lossctl.errors import LoadError, SpecError, UsageError
from lossctl.loader import parse_reference
from lossctl.spec import Spec, find_spec_files, load_spec_file

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Job:
    """One spec to run, with notes on how it was chosen (shown under the table)."""

    spec: Spec
    notes: tuple[str, ...] = ()
    searched: str | None = None
    """The folder searched in vain for a spec naming this Function (default inputs are used)."""


def collect(targets: Sequence[str], *, configs_dir: Path) -> list[Job]:
    """Jobs for every TARGET; with none, every spec under `configs_dir`."""
    if not targets:
        if not configs_dir.is_dir():
            raise UsageError(
                f"no TARGET given and no configs/ folder in {configs_dir.resolve().parent}",
                hint="pass a Function (pkg.mod.Class), a spec file, or a folder of specs",
            )
        targets = [str(configs_dir)]
    jobs: list[Job] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files = find_spec_files(path)
            if not files:
                raise UsageError(f"no .yaml or .yml spec files under {target}")
            for file in files:
                jobs.extend(Job(spec) for spec in load_spec_file(file))
        elif path.suffix in SPEC_SUFFIXES:
            if not path.is_file():
                raise UsageError(f"no such spec file: {target}")
            jobs.extend(Job(spec) for spec in load_spec_file(path))
        else:
            jobs.extend(jobs_for_reference(target, configs_dir=configs_dir))
    return jobs


def jobs_for_reference(reference: str, *, configs_dir: Path) -> list[Job]:
    """The specs under `configs_dir` that name this Function, else one with default inputs."""
    key = parse_reference(reference).key()
    found: list[Job] = []
    invalid: list[str] = []
    if configs_dir.is_dir():
        for file in find_spec_files(configs_dir):
            try:
                specs = load_spec_file(file)
            except SpecError:
                invalid.append(str(file))
                continue
            for spec in specs:
                try:
                    if parse_reference(spec.function, base_dir=spec.base_dir).key() == key:
                        found.append(Job(spec, notes=(f"spec `{spec.name}` from {file}",)))
                except LoadError:
                    continue
    if found:
        return found
    notes = [f"skipped invalid spec files while looking for one: {', '.join(invalid)}"] if invalid else []
    spec = Spec(function=reference, name=reference.replace(":", ".").rsplit(".", 1)[-1], args_given=False)
    return [Job(spec, notes=tuple(notes), searched=str(configs_dir))]

"""The Python API: `lossctl.check(...)` and `lossctl.assert_gradients(...)` for use inside tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from lossctl.errors import LossctlError
from lossctl.limits import MAX_INPUT_BYTES
from lossctl.report import Report, Status
from lossctl.runner import run_checks
from lossctl.settings import resolve_settings
from lossctl.spec import Spec, Tolerance, ValueArg, check_input_memory, load_specs
from lossctl.suite import Job, collect


def check(
    target: str | type | Any | None = None,
    spec: str | Mapping[str, Any] | None = None,
    *,
    checks: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    device: str | None = None,
    seed: int | None = None,
    jobs: int = 0,
    allow_unverified_gradients: bool | None = None,
    allow_large: bool = False,
) -> Report:
    """Run lossctl's checks and return the Report (never prints, never exits).

    `target` is what `lossctl check` takes (a dotted path, `file.py:Name`, a spec file or folder)
    or the object itself (a Function class, Module class or callable). `spec` is a spec as YAML
    text or a mapping; its `function:` may be left out when `target` is given. With neither a spec
    nor a spec file, default inputs are built as on the command line. Raises LossctlError for
    misuse (invalid spec, unknown check id, unavailable device). The project config in the current
    directory (lossctl.yaml or [tool.lossctl]) applies as on the command line; arguments win.
    A spec whose inputs need more than 1 GiB is refused unless `allow_large` (as --allow-large).
    """
    settings = resolve_settings(
        device=device,
        seed=seed,
        checks=checks,
        skip=skip,
        jobs=jobs,
        allow_unverified_gradients=allow_unverified_gradients,
    )
    options = settings.run_options()
    jobs_to_run = _jobs(target, spec, settings.tolerance)
    check_input_memory(
        [job.spec for job in jobs_to_run],
        limit=None if allow_large else MAX_INPUT_BYTES,
        allow="allow_large=True (lossctl.check)",
    )
    if jobs > 0 and any(job.target is not None for job in jobs_to_run):
        raise LossctlError(
            "an object passed to lossctl.check runs in this process only (jobs=0)",
            hint="pass its dotted path instead to run it in worker processes",
        )
    return run_checks(jobs_to_run, options)


def assert_gradients(
    function: type | Any,
    *args: Any,
    checks: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    seed: int = 0,
    allow_unverified_gradients: bool | None = None,
    **kwargs: Any,
) -> Report:
    """Check `function` on these exact arguments; raise AssertionError with lossctl's diagnosis
    when a check fails or raises. Returns the Report when everything passed.

        lossctl.assert_gradients(MyLoss, logits, target, 2.0)
    """
    from lossctl.target import classify

    name = getattr(function, "__qualname__", repr(function))
    target = classify(function, name)
    params = target.parameters
    if params is None:
        names = [f"arg{i}" for i in range(len(args))]
    else:
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(args) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise LossctlError(f"{target.signature} takes {len(positional)} arguments, got {len(args)}")
        names = positional[: len(args)] + [f"arg{i}" for i in range(len(positional), len(args))]
    values = {**dict(zip(names, args, strict=True)), **kwargs}
    device = next((str(v.device) for v in values.values() if hasattr(v, "device")), "cpu")
    settings = resolve_settings(
        device=device,
        seed=seed,
        checks=checks,
        skip=skip,
        jobs=0,  # the Function object itself runs: in this process (a test's local class cannot be pickled)
        allow_unverified_gradients=allow_unverified_gradients,
    )
    spec = Spec(
        function=f"{getattr(function, '__module__', '')}.{name}",
        name=name,
        args={k: ValueArg(v) for k, v in values.items()},
        seed=seed,
        tolerance=replace(Tolerance(), **settings.tolerance),
    )
    options = settings.run_options()
    report = run_checks([Job(spec, target=function)], options)
    if not report.ok:
        raise AssertionError(failure_text(report))
    return report


def failure_text(report: Report) -> str:
    """Every failing or erroring check with its detail, hint and explanation."""
    lines = []
    for case, result in report.results():
        if not result.status.is_problem:
            continue
        lines.append(f"{case.case} · {result.check}: {result.status.value.upper()}: {result.detail}")
        if result.hint:
            lines.append(f"  hint: {result.hint}")
        for part in (result.explain, result.traceback):
            if part:
                lines.extend(f"  {line}" for line in part.splitlines())
    return "\n".join(lines)


def _jobs(target: Any, spec: str | Mapping[str, Any] | None, tolerance: Mapping[str, float] | None = None) -> list[Job]:
    obj = None if target is None or isinstance(target, str | Path) else target
    if spec is not None:
        data = yaml.safe_load(spec) if isinstance(spec, str) else dict(spec)
        if not isinstance(data, dict):
            raise LossctlError("spec: expected a mapping (YAML text or a dict)")
        if obj is not None:
            data.setdefault("function", f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', 'object')}")
        elif target is not None:
            data.setdefault("function", str(target))
        specs = load_specs(yaml.safe_dump(data, sort_keys=False), source="<spec>", tolerance=tolerance)
        return [Job(s, target=obj) for s in specs]
    if obj is not None:
        reference = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', 'object')}"
        name = getattr(obj, "__name__", reference)
        spec = Spec(
            function=reference, name=name, args_given=False, tolerance=replace(Tolerance(), **(tolerance or {}))
        )
        return [Job(spec, target=obj)]
    if target is None:
        raise LossctlError("lossctl.check needs a target or a spec")
    return collect([str(target)], configs_dir=Path("configs"), tolerance=tolerance)


def inputs_for(spec: str | Mapping[str, Any], point: int = 0, device: str = "cpu") -> dict[str, Any]:
    """The inputs lossctl builds for a spec at one point of its sweep: to poke at a failure."""
    import torch

    from lossctl.runner import build_cases

    (job,) = _jobs(None, spec)[:1]
    for item in build_cases(job, torch.device(device), job.spec.seed, points=(point,)):
        if hasattr(item, "values"):
            return dict(zip(item.names, item.values, strict=True))
        raise LossctlError(item.message)
    raise LossctlError("the spec has no such point")


__all__ = ["Report", "Status", "assert_gradients", "check", "failure_text", "inputs_for"]

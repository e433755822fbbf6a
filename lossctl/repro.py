"""`--repro DIR`: one standalone script per failure that rebuilds the exact inputs and reruns the
failing check, so a CI failure reproduces on a laptop with `python DIR/<case>__<check>.py`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from lossctl.errors import UsageError
from lossctl.files import write_atomic
from lossctl.paths import relative_path
from lossctl.report import RUN, SETUP, VERIFIED, Report
from lossctl.spec import spec_to_dict
from lossctl.suite import Job

TEMPLATE = '''#!/usr/bin/env python
"""Reproduce lossctl's `{check}` {status} on `{case}`{origin}.

    python {script}      # from the project root, where the Function imports

lossctl said: {detail}{hint}

The spec below pins the case's sizes, dtypes, seed and device, so the inputs are bit-identical to
the run that failed. `lossctl.inputs_for(SPEC)` returns them, to poke at in a debugger.
"""

import sys

import lossctl

SPEC = """
{spec}"""

if __name__ == "__main__":
    report = lossctl.check(spec=SPEC, checks={checks!r}, device={device!r}, seed={seed})
    for case in report.cases:
        for result in case.checks:
            print(f"{{case.case}} · {{result.check}}: {{result.status.value.upper()}}: {{result.detail}}")
            if result.hint:
                print(f"  hint: {{result.hint}}")
            for part in (result.explain, result.traceback):
                if part:
                    print(part)
    sys.exit(0 if report.ok else 1)
'''


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "case"


def write_repro_scripts(report: Report, jobs: Sequence[Job], directory: Path, options: object) -> list[Path]:
    """A script per failing or erroring check (cases that could not be built have nothing to rerun)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--repro {directory}: cannot create it ({error.strerror})") from None
    by_spec = {(job.spec.source, job.spec.name): job for job in jobs}
    written = []
    for case, result in report.results():
        # `verified` reports that nothing was checked: there is no failing computation to replay.
        if not result.status.is_problem or result.check in (SETUP, RUN, VERIFIED):
            continue
        job = by_spec.get((case.source, case.spec))
        if job is None or job.target is not None:
            continue
        spec = spec_to_dict(job.spec, case.dims or None)
        spec["seed"] = case.seed
        for key in ("function", "reference"):  # file references: from the project root, where the script runs
            value = spec.get(key)
            if value and ".py:" in value:
                path, _, name = value.rpartition(":")
                spec[key] = f"{relative_path(str((job.spec.base_dir / path).resolve()))}:{name}"
        path = directory / f"{_safe(case.case)}__{result.check}.py"
        text = TEMPLATE.format(
            check=result.check,
            status=result.status.value.upper(),
            case=case.case,
            origin=f" (from {case.source})" if case.source else "",
            script=path,
            detail=result.detail.replace('"""', "'''"),
            hint=f"\nhint: {result.hint}" if result.hint else "",
            spec=yaml.safe_dump(spec, sort_keys=False).replace('"""', "'''"),
            checks=[result.check],
            device=case.device,
            seed=case.seed,
        )
        write_atomic(path, text, "--repro")
        written.append(path)
    return written

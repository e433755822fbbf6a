"""The check registry: one module per check (named as its id), listed in lossctl/catalogue.py."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from lossctl.catalogue import CATALOGUE
from lossctl.checks.base import Check
from lossctl.errors import UsageError


def registry() -> tuple[Check, ...]:
    """Every check, in the catalogue's order: module lossctl.checks.<id> holds each one's CHECK, and
    the catalogue its description and default."""
    checks = []
    for entry in CATALOGUE:
        check = importlib.import_module(f"lossctl.checks.{entry.id}").CHECK
        checks.append(replace(check, description=entry.description, default=entry.default))
    return tuple(checks)


def select_checks(
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    spec: Mapping[str, bool] | None = None,
    base: Sequence[str] | None = None,
) -> tuple[Check, ...]:
    """The checks to run: `only` (--checks) or else the `base` set (the project config's; default:
    every check that is on by default) as the spec's `checks:` overrides it, minus `skip`. Unknown
    ids are errors."""
    checks = registry()
    known = [c.id for c in checks]
    for option, ids in (("--checks", only or ()), ("--skip", skip)):
        for check_id in ids:
            if check_id not in known:
                raise UsageError(
                    f"{option}: unknown check `{check_id}`",
                    hint=f"known checks: {', '.join(known)}",
                )
    settings = spec or {}
    default = {c.id: (c.id in base if base is not None else c.default) for c in checks}
    chosen = [c for c in checks if (c.id in only if only else settings.get(c.id, default[c.id]))]
    return tuple(c for c in chosen if c.id not in skip)


def scale_checks(
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    spec: Mapping[str, bool] | None = None,
    base: Sequence[str] | None = None,
) -> tuple[Check, ...]:
    """Opt-in checks that run by default on a large case (catalogue `at_scale`), unless --checks,
    the project's `checks:` list or the spec chose otherwise, or --skip names them."""
    if only or base is not None:
        return ()
    settings = spec or {}
    wanted = {c.id for c in CATALOGUE if c.at_scale and not c.default and c.id not in skip and c.id not in settings}
    return tuple(c for c in registry() if c.id in wanted)

"""The check registry: one module per check, each with a stable id and a one-line description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lossctl.checks.base import Check
from lossctl.errors import UsageError


def registry() -> tuple[Check, ...]:
    """Every check, in the order they run (the order of lossctl.spec.CHECK_IDS)."""
    from lossctl.checks import (
        backward,
        compile,
        determinism,
        double_backward,
        edge_sizes,
        forward,
        forward_ad,
        grad_output_intact,
        gradcheck,
        gradient_blocks,
        gradient_scaled,
        inplace,
        linearity,
        low_precision,
        needs_input_grad,
        noncontiguous,
        raw_backward,
        reference,
        stability,
        vmap,
    )

    modules = (
        forward,
        backward,
        raw_backward,
        gradcheck,
        gradient_scaled,
        gradient_blocks,
        linearity,
        needs_input_grad,
        determinism,
        grad_output_intact,
        inplace,
        noncontiguous,
        edge_sizes,
        double_backward,
        forward_ad,
        vmap,
        low_precision,
        reference,
        stability,
        compile,
    )
    return tuple(module.CHECK for module in modules)


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

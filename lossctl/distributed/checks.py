"""The checks of a distributed case, as pure functions of what the ranks sent back, with the
diagnosis in rank terms ("rank 2's gradient for `image` is missing the other ranks'
contributions", "every rank's gradient is W=4× too large")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lossctl.distributed.program import assemble_gradient, combine_outputs
from lossctl.report import Outcome
from lossctl.spec import Tolerance

SCALE_SLACK = 0.02
"""How close a ratio must be to W (or 1/W) to be called "W× too large" (or small)."""


@dataclass(frozen=True)
class RankRun:
    """One forward+backward on every rank: per rank, its outputs and gradients."""

    outputs: list[list[torch.Tensor]]
    modes: list[str]
    grads: list[list[torch.Tensor | None]]

    @classmethod
    def from_replies(cls, replies: Sequence[Mapping[str, Any]]) -> RankRun:
        return cls(
            outputs=[r["outputs"] for r in replies],
            modes=list(replies[0]["modes"]),
            grads=[r["grads"] for r in replies],
        )

    @property
    def world_size(self) -> int:
        return len(self.outputs)

    def global_outputs(self) -> list[torch.Tensor]:
        return [combine_outputs(mode, [rank[i] for rank in self.outputs]) for i, mode in enumerate(self.modes)]

    def global_grad(self, slot: int, shard: int | None) -> torch.Tensor | None:
        grads = [rank[slot] for rank in self.grads]
        if any(g is None for g in grads):
            return None
        return assemble_gradient(shard, grads)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Reference:
    """The single-process truth: outputs and gradients for the global cotangent."""

    outputs: list[torch.Tensor]
    grads: list[torch.Tensor | None]


def _close(got: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> bool:
    return got.shape == expected.shape and bool(
        torch.allclose(got.double(), expected.double(), rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    )


def _max_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected.double()).abs().max()) if got.numel() else 0.0


def _scale(got: torch.Tensor, expected: torch.Tensor, world_size: int) -> str | None:
    """ "W×" or "1/W×" when `got` is that multiple of `expected`, else None."""
    e = expected.double().flatten()
    g = got.double().flatten()
    denominator = float(e @ e)
    if denominator == 0.0 or got.shape != expected.shape:
        return None
    ratio = float(g @ e) / denominator
    if float((g - ratio * e).norm()) > SCALE_SLACK * float(g.norm()):
        return None
    for factor, name in ((world_size, f"W={world_size}×"), (1 / world_size, f"1/W = 1/{world_size}×")):
        if world_size > 1 and abs(ratio - factor) <= SCALE_SLACK * factor:
            return name if abs(ratio - factor) <= 1e-6 * factor else f"{ratio:.4g}× (≈ {name.rstrip('×')})"
    return None


def ratio_above_one(scale: str) -> bool:
    return scale.startswith("W") or "≈ W" in scale


def check_forward(run: RankRun, reference: Reference, tol: Tolerance) -> Outcome:
    """The global output against the single-process reference's."""
    world = run.world_size
    problems = []
    worst = 0.0
    for i, (got, expected) in enumerate(zip(run.global_outputs(), reference.outputs, strict=False)):
        what = "the global loss" if got.dim() == 0 else f"the global output {i}"
        if got.shape != expected.shape:
            problems.append(
                f"{what} ({run.modes[i]} over {world} ranks) has shape {list(got.shape)}, "
                f"the single-process reference's {list(expected.shape)}"
            )
            continue
        worst = max(worst, _max_diff(got, expected))
        if _close(got, expected, tol):
            continue
        scale = _scale(got, expected, world)
        if scale is not None:
            problems.append(f"{what} is {scale} the single-process {'loss' if got.dim() == 0 else 'output'}")
        elif got.dim() == 0:
            problems.append(f"{what} is {float(got):.6g}, the single-process loss {float(expected):.6g}")
        else:
            problems.append(f"{what} differs from the single-process output (max |Δ| {_max_diff(got, expected):.3g})")
    if len(run.global_outputs()) != len(reference.outputs):
        problems.append(
            f"the ranks return {len(run.global_outputs())} differentiable outputs, the reference "
            f"{len(reference.outputs)}"
        )
    if problems:
        return Outcome.failed(
            "; ".join(problems),
            hint="a loss scaled by W, a local count or vocab where the global one belongs, or the wrong "
            "`combine:` (mean, sum, cat) for how the ranks' outputs form the global one",
        )
    modes = ", ".join(sorted(set(run.modes)))
    return Outcome.passed(
        f"the global output ({modes} over {world} ranks) matches the single-process reference (max |Δ| {worst:.2g})",
        data={"max_abs_diff": worst},
    )


def check_reference_gradient(
    run: RankRun, reference: Reference, names: Sequence[str], shards: Sequence[int | None], tol: Tolerance
) -> Outcome:
    """Each rank's gradient against the reference's on its shard, under the convention."""
    world = run.world_size
    problems = []
    worst = 0.0
    for slot, (name, shard) in enumerate(zip(names, shards, strict=True)):
        expected = reference.grads[slot] if slot < len(reference.grads) else None
        got = run.global_grad(slot, shard)
        if got is None:
            problems.append(f"a rank left no gradient for `{name}` (see dist_ranks)")
            continue
        if expected is None:
            expected = torch.zeros_like(got)
        if got.shape != expected.shape:
            problems.append(
                f"the gradient for `{name}` has shape {list(got.shape)}, the reference's {list(expected.shape)}"
            )
            continue
        worst = max(worst, _max_diff(got, expected))
        if _close(got, expected, tol):
            continue
        scale = _scale(got, expected, world)
        if shard is None:
            problem = f"the ranks' summed gradient for `{name}` (every rank holds it whole)"
            problems.append(
                f"{problem} is {scale} the reference's"
                if scale
                else f"{problem} differs from the reference's (max |Δ| {_max_diff(got, expected):.3g})"
            )
            continue
        if scale is not None:
            problems.append(
                f"every rank's gradient for `{name}` is {scale} too {'large' if ratio_above_one(scale) else 'small'}"
            )
            continue
        bad = [
            r
            for r, (g, e) in enumerate(zip(got.chunk(world, shard), expected.chunk(world, shard), strict=True))
            if not _close(g, e, tol)
        ]
        who = "every rank's gradient" if len(bad) == world else _ranks(bad) + " gradient"
        problems.append(
            f"{who} for `{name}` differs from the reference's on its shard (max |Δ| {_max_diff(got, expected):.3g})"
        )
    if problems:
        return Outcome.failed(
            "; ".join(problems),
            hint=_convention(run.modes, world),
            data={"max_abs_diff": worst},
        )
    return Outcome.passed(
        f"every rank's gradient for {_names(names)} matches the reference's on its shard "
        f"({_convention(run.modes, world, short=True)}; max |Δ| {worst:.2g})",
        data={"max_abs_diff": worst},
    )


def check_finite_differences(
    probes: Sequence[Sequence[tuple[str, int | None, float, float, float]]],
    eps: float,
    tol: Tolerance,
) -> Outcome:
    """The ranks' analytical gradients against central differences of the whole W-rank program
    (Σ over ranks of ⟨cotangent_r, output_r⟩) along directions over the global inputs."""
    world = len(probes)
    count = len(probes[0])
    failing: dict[tuple[str, int | None], list[str]] = {}
    worst = 0.0
    for k in range(count):
        name, owner = probes[0][k][0], probes[0][k][1]
        terms = [(rank[k][2] - rank[k][3]) / (2 * eps) for rank in probes]
        numerical = sum(terms)
        analytic = sum(rank[k][4] for rank in probes)
        error = abs(analytic - numerical)
        worst = max(worst, error / max(1.0, abs(numerical)))
        if error <= tol.atol + tol.rtol * abs(numerical):
            continue
        own = terms[owner] if owner is not None else None
        if own is not None and abs(analytic - own) <= tol.atol + tol.rtol * abs(own):
            kind = "missing"
        elif numerical and abs(analytic / numerical - world) <= SCALE_SLACK * world and world > 1:
            kind = "large"
        elif numerical and world > 1 and abs(analytic / numerical - 1 / world) <= SCALE_SLACK / world:
            kind = "small"
        else:
            kind = f"off:{analytic:.6g}:{numerical:.6g}"
        failing.setdefault((name, owner), []).append(kind)
    names = list(dict.fromkeys(p[0] for p in probes[0]))
    if not failing:
        first = (probes[0][0][0], probes[0][0][1])
        per = sum(1 for p in probes[0] if (p[0], p[1]) == first)
        return Outcome.passed(
            f"{count} directions over the global inputs ({_names(names)}; {per} on each rank's shard of "
            f"each) agree with finite differences of the whole program within "
            f"{tol.atol:g} + {tol.rtol:g}·|fd| (largest relative error {worst:.2g})",
            data={"directions": count, "largest_error": worst},
        )
    problems = []
    for name in names:
        by_kind: dict[str, list[int | None]] = {}
        for (n, owner), kinds in failing.items():
            if n == name:
                by_kind.setdefault(kinds[0], []).append(owner)
        for kind, owners in by_kind.items():
            if owners == [None]:
                who = f"the ranks' summed gradient for `{name}`"
            elif len(owners) == world:
                who = f"every rank's gradient for `{name}`"
            else:
                who = f"{_ranks(sorted(o for o in owners if o is not None))} gradient for `{name}`"
            if kind == "missing":
                problems.append(f"{who} is missing the other ranks' contributions (equals its local-only part)")
            elif kind == "large":
                problems.append(f"{who} is W={world}× too large")
            elif kind == "small":
                problems.append(f"{who} is 1/W = 1/{world}× too small")
            else:
                _, analytic, numerical = kind.split(":")
                problems.append(
                    f"{who} disagrees with finite differences of the whole program "
                    f"(⟨grad, v⟩ = {analytic}, numerical {numerical})"
                )
    hint = None
    if any(kinds[0] == "missing" for kinds in failing.values()):
        hint = (
            "the other ranks' terms reach this rank only through a collective's backward: gather with "
            "torch.distributed.nn.functional.all_gather (or a Function whose backward all-reduces or "
            "reduce-scatters the gradient), not dist.all_gather into buffers"
        )
    return Outcome.failed("; ".join(problems), hint=hint, data={"directions": count, "largest_error": worst})


def check_ranks(run: RankRun, names: Sequence[str]) -> Outcome:
    """Every rank left a finite gradient on every input that requires grad."""
    problems = []
    for rank, grads in enumerate(run.grads):
        for name, grad in zip(names, grads, strict=True):
            if grad is None:
                problems.append(f"rank {rank} left no gradient for `{name}` (None)")
            elif not bool(torch.isfinite(grad).all()):
                bad = int((~torch.isfinite(grad)).sum())
                problems.append(f"rank {rank}'s gradient for `{name}` has {bad} NaN/inf values")
    if problems:
        return Outcome.failed(
            "; ".join(problems),
            hint="every rank's backward must return a gradient for its shard (a rank whose shard "
            "takes no part in the loss still gets zeros)",
        )
    return Outcome.passed(f"all {run.world_size} ranks left finite gradients for {_names(names)}")


def check_determinism(first: RankRun, second: RankRun, names: Sequence[str], nondet_tol: float) -> Outcome:
    """Two identical runs on every rank give the same outputs and gradients."""
    problems = []
    for rank in range(first.world_size):
        pairs = [("output", a, b) for a, b in zip(first.outputs[rank], second.outputs[rank], strict=True)]
        pairs += [
            (f"gradient for `{n}`", a, b) for n, a, b in zip(names, first.grads[rank], second.grads[rank], strict=True)
        ]
        for what, a, b in pairs:
            if a is None or b is None:
                continue
            same = torch.equal(a, b) if nondet_tol == 0 else bool((a - b).abs().max() <= nondet_tol)
            if not same:
                problems.append(
                    f"rank {rank}'s {what} differs between two identical runs (max |Δ| {_max_diff(a, b):.3g})"
                )
    if problems:
        return Outcome.failed(
            "; ".join(problems),
            hint="a reduction whose order changes between runs (set tolerance.nondet_tol if that is expected)",
        )
    exact = "bitwise" if nondet_tol == 0 else f"within {nondet_tol:g}"
    return Outcome.passed(f"two runs give {exact} equal outputs and gradients on all {first.world_size} ranks")


def check_world_sizes(
    run: RankRun, first: RankRun, shards: Sequence[int | None], names: Sequence[str], tol: Tolerance
) -> Outcome:
    """The global output and gradient at this world size against the sweep's first."""
    problems = []
    for i, (a, b) in enumerate(zip(run.global_outputs(), first.global_outputs(), strict=False)):
        if not _close(a, b, tol):
            scale = _scale(a, b, run.world_size // max(1, first.world_size))
            what = "the global loss" if a.dim() == 0 else f"the global output {i}"
            problems.append(
                f"{what} changes from W={first.world_size} to W={run.world_size}" + (f" ({scale})" if scale else "")
            )
    for slot, (name, shard) in enumerate(zip(names, shards, strict=True)):
        a, b = run.global_grad(slot, shard), first.global_grad(slot, shard)
        if a is not None and b is not None and not _close(a, b, tol):
            problems.append(
                f"the global gradient for `{name}` changes from W={first.world_size} to W={run.world_size} "
                f"(max |Δ| {_max_diff(a, b):.3g})"
            )
    if problems:
        return Outcome.failed("; ".join(problems), hint="something in the program depends on the world size")
    return Outcome.passed(f"global output and gradients at W={run.world_size} match W={first.world_size}")


def _convention(modes: Sequence[str], world: int, *, short: bool = False) -> str:
    if short:
        return f"combine: {', '.join(sorted(set(modes)))}"
    if set(modes) == {"mean"}:
        return (
            f"the convention (combine: mean): with cotangent 1 on every rank, rank r's gradient on its "
            f"shard is W = {world} × the single-process gradient on that slice, as DDP's averaging expects"
        )
    return (
        f"the convention (combine: {', '.join(sorted(set(modes)))}): rank r's gradient is the derivative of the "
        "sum over ranks of ⟨cotangent_r, output_r⟩, so it equals the single-process gradient on its slice"
    )


def _ranks(indices: Sequence[int]) -> str:
    if len(indices) == 1:
        return f"rank {indices[0]}'s"
    return f"ranks {', '.join(map(str, indices))}'"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)

"""`gradient_blocks`: the gradient checked block by block (rows, chunks, tiles) and at every dim's
boundary coordinates, at the size the spec names and within a time budget.

In float64 (when the Function runs it): S(x) = ⟨v, f(x)⟩ with a seeded random cotangent v; for each
differentiable input and dim, blocks cut at the first and last index, every power of two and the
start of each usual tile width's last tile (lossctl.probing.block_edges); in each block, k random
directions compare central differences with ⟨g, d⟩ relative to that block's own gradient; a failing
run of blocks is bisected to its first and last wrong index; exact central differences on sampled
coordinates include each dim's first and last index. Functions that refuse float64 (Triton-like
kernels) get the Taylor-remainder test in their own dtype instead.

The probe counts come from lossctl.probing.plan_probes, given one measured forward, the case's
forward+backward (CheckContext.cost_s) and the seconds the case's budget plan allots this check
(CheckContext.allotted_s, --budget); the detail says what was covered and the smallest error it catches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from lossctl.case import Case, NoDifferentiableOutput, float64_supported
from lossctl.checks.base import Check
from lossctl.checks.common import dtype_name, require_differentiable_inputs
from lossctl.diagnose import factor_hint
from lossctl.inputs import derive_seed
from lossctl.probing import (
    Block,
    BlockProbe,
    Plan,
    Prober,
    Region,
    boundary_coordinates,
    localize,
    merge_failures,
    partition,
    plan_probes,
    taylor_detectable,
    taylor_test,
)
from lossctl.report import Outcome

BUDGET_SHARE = 0.5
"""Without a budget plan (the check called alone), the share of what is left of the case's budget
it takes: the checks after it need the rest."""
MAX_RUNS = 4
"""Failing runs of blocks localized by bisection (each costs O(log n) probes)."""


def check_gradient_blocks(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    deadline = time.perf_counter() + planned_seconds(case)
    if float64_supported(case.device):
        leaves = case.fresh(torch.float64)
        try:
            outputs = _timed(lambda: case.call(leaves, torch.float64))
        except Exception as error:  # a Triton-like kernel refuses float64: its own dtype, then
            return _taylor(case, deadline, f"cannot run float64 ({type(error).__name__})")
        setup = _Setup(case, torch.float64, leaves, outputs)
        del leaves, outputs  # the setup holds what it needs: the first forward's graph is freed now
        return _blockwise(case, setup, deadline)
    return _taylor(case, deadline, f"float64 is not supported on {case.device.type}")


def planned_seconds(case: Case) -> float:
    """Its allotment in the case's budget plan (lossctl.budget: its nominal probes plus a share of
    the slack, or fewer when the budget is tight), else a share of what is left."""
    if case.allotment("gradient_blocks") is not None:
        return case.allotted_s("gradient_blocks")
    return max(case.remaining_s(), 0.0) * BUDGET_SHARE


def _timed(call: Callable[[], tuple[object, ...]]) -> tuple[tuple[object, ...], float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


class _Setup:
    """S(x) = ⟨v, f(x)⟩ on the case in one dtype, its analytical gradient, and the costs plans are
    priced in: one forward (measured here) and one forward+backward (the case's, measured once)."""

    def __init__(
        self, case: Case, dtype: torch.dtype | None, leaves: list[object], forward: tuple[tuple[object, ...], float]
    ) -> None:
        self.case, self.dtype = case, dtype
        outputs, self.forward_seconds = forward
        del forward
        self.positions = case.output_positions(outputs)
        differentiable = [outputs[p] for p in self.positions]
        if not differentiable:
            raise NoDifferentiableOutput()
        self.cotangents = case.random_cotangents(differentiable, "gradient_blocks")  # type: ignore[arg-type]
        wrt = [leaves[i] for i in case.diff_indices]
        grads = torch.autograd.grad(differentiable, wrt, self.cotangents, allow_unused=True)  # type: ignore[arg-type]
        del outputs, differentiable, wrt  # the graph: freed before cost_s() may run another forward+backward
        self.step_seconds = max(case.cost_s(), self.forward_seconds)
        self.grads = [None if g is None else g.detach() for g in grads]
        # The probes evaluate at the leaves' values (no second copy of the inputs); the inputs
        # that are perturbed are cloned by the Prober, after which release_inputs() drops these.
        self.values: list[object] = [v.detach() if isinstance(v, torch.Tensor) else v for v in leaves]
        self.inputs = [self.values[i] for i in case.diff_indices]
        self._shapes = [tuple(t.shape) for t in self.inputs]  # type: ignore[attr-defined]

    def release_inputs(self) -> None:
        """Forget the differentiable inputs once a Prober holds its own copy of them: `scalar`
        substitutes those positions on every call, so only the other values are needed."""
        self.values = [None if i in self.case.diff_indices else v for i, v in enumerate(self.values)]
        self.inputs = []

    def scalar(self, diff: Sequence[torch.Tensor]) -> float:
        with torch.no_grad():
            outs = self.case.call(self.case.substitute(self.values, diff), self.dtype)
        return float(
            sum(
                float((outs[p].double() * v.double()).sum())
                for p, v in zip(self.positions, self.cotangents, strict=True)
            )
        )

    def shapes(self) -> list[tuple[int, ...]]:
        return list(self._shapes)

    def plan(self, float64: bool, seconds: float) -> Plan:
        return plan_probes(
            self.shapes(),
            forward_seconds=self.forward_seconds,
            step_seconds=self.step_seconds,
            budget_seconds=max(seconds, 0.0),
            float64=float64,
        )


def _blockwise(case: Case, setup: _Setup, deadline: float) -> Outcome:
    tol = case.spec.tolerance
    start = time.perf_counter()
    prober = Prober(
        setup.scalar,
        setup.inputs,
        setup.grads,
        eps=tol.eps,
        tolerance=tol.rtol,
        seed=derive_seed(case.seed, "gradient_blocks"),
    )
    setup.release_inputs()
    # the first forward ran cold (and recorded a graph): the no-grad one the probes repeat is the cost
    setup.forward_seconds = min(setup.forward_seconds, time.perf_counter() - start)
    plan = setup.plan(float64=True, seconds=deadline - time.perf_counter())
    prober.directions = plan.directions
    blocks = partition(setup.shapes(), plan.stride)
    probes = []
    for block in blocks:
        if time.perf_counter() > deadline:
            break
        probes.append(prober.probe(block))
    coordinates = []
    per_input = plan.coordinates // max(len(setup.shapes()), 1)
    for position, shape in enumerate(setup.shapes()):
        limit = math.prod(shape) if plan.every_coordinate else max(per_input, 1)
        seed = derive_seed(case.seed, "gradient_blocks", "coordinates", position)
        for index in boundary_coordinates(shape, limit, seed):
            if time.perf_counter() > deadline and coordinates:
                break
            coordinates.append(prober.coordinate(position, index))
    failed_blocks = [p for p in probes if p.failed]
    failed_coordinates = [c for c in coordinates if c.failed]
    allowances = sorted(p.allowed for p in probes if math.isfinite(p.allowed))
    detectable = prober.detectable(allowances[len(allowances) // 2] if allowances else None)
    noisiest = prober.detectable()
    power = f"detects ≥ {detectable:.0e} of a block's gradient"
    if noisiest > 2 * detectable:  # the smallest blocks of a huge tensor sit near float64's rounding
        power += f" ({noisiest:.0e} in the noisiest block)"
    covered = _coverage(plan, len(probes), len(coordinates))
    if len(probes) < len(blocks):
        covered += (
            f" (its {plan.budget_seconds:.0f} s of the budget ran out after {len(probes)} of {len(blocks)} blocks)"
        )
    data: dict[str, object] = {
        "plan": plan.to_dict(),
        "blocks": len(probes),
        "blocks_planned": len(blocks),
        "coordinates": len(coordinates),
        "directions": plan.directions,
        "detectable": detectable,
        "detectable_noisiest_block": noisiest,
        "worst_block_error": max((p.error for p in probes), default=0.0),
        "worst_coordinate_error": max((c.error for c in coordinates), default=0.0),
    }
    if not failed_blocks and not failed_coordinates:
        data["evaluations"] = prober.evaluations
        data["cost_x_forward_backward"] = _cost(prober.evaluations, setup)
        return Outcome.passed(
            f"right in {covered}; {power}; "
            f"{prober.evaluations} forwards ≈ {_cost(prober.evaluations, setup):.0f}× one forward+backward",
            data=data,
            explain=_plan_text(plan, prober.evaluations, setup),
        )
    # the clearest runs first (bisection costs O(log n) each)
    runs = sorted(merge_failures(failed_blocks), key=lambda run: -_run_error(run, failed_blocks))[:MAX_RUNS]
    passed = {p.block for p in probes if not p.failed}
    # a run whose neighbours were not probed (the budget ran out) may end where probing stopped
    closed = [_bounded(first, last, passed, setup.shapes()[first.input][first.dim]) for first, last in runs]
    regions = [localize(prober, first, last) for first, last in runs]
    data["evaluations"] = prober.evaluations
    data["cost_x_forward_backward"] = _cost(prober.evaluations, setup)
    data["regions"] = [_region_dict(case, r) for r in regions]
    data["failed_blocks"] = [_block_dict(p) for p in failed_blocks]
    data["failed_coordinates"] = [
        {
            "input": case.diff_names[c.input],
            "index": list(c.index),
            "numerical": c.numerical,
            "analytical": c.analytical,
        }
        for c in failed_coordinates
    ]
    detail, hint = _explain(case, setup, list(zip(regions, closed, strict=True)), failed_coordinates)
    lines = [_plan_text(plan, prober.evaluations, setup), "wrong regions (bisected):"]
    for r in regions:
        name = case.diff_names[r.input]
        where = r.describe(setup.shapes()[r.input], _dim_name(case, name, r.dim))
        factor = f"{r.factor:.4g}× the numerical" if r.factor is not None else f"off by {r.error:.2g}"
        lines.append(f"  `{name}` {where}: {factor}")
    return Outcome.failed(
        f"{detail} ({len(failed_blocks)} of {len(probes)} blocks, {len(failed_coordinates)} of "
        f"{len(coordinates)} coordinates wrong)",
        hint=hint,
        explain="\n".join(lines),
        data=data,
    )


def _plan_text(plan: Plan, evaluations: int, setup: _Setup) -> str:
    """The plan and what it cost, for -v."""
    edges = "every power of two" if plan.stride == 1 else f"every {plan.stride}th power of two"
    return (
        f"plan: {plan.blocks} blocks (edges at each dim's ends, {edges}, last tiles of 64…4096) × "
        f"{plan.directions} directions, {plan.coordinates} coordinates, budget {plan.budget_seconds:.0f} s; "
        f"one forward {setup.forward_seconds * 1e3:.1f} ms, forward+backward {setup.step_seconds * 1e3:.1f} ms; "
        f"spent {evaluations} forwards ≈ {_cost(evaluations, setup):.1f}× one forward+backward"
        + "".join(f"; {note}" for note in plan.notes)
    )


def _coverage(plan: Plan, blocks: int, coordinates: int) -> str:
    coords = (
        f"every one of {coordinates} coordinates"
        if plan.every_coordinate
        else (f"{coordinates} coordinates incl. every dim's first and last index")
    )
    return f"{blocks} blocks × {plan.directions} direction{'s' * (plan.directions > 1)} and {coords}"


def _cost(evaluations: int, setup: _Setup) -> float:
    return evaluations * setup.forward_seconds / setup.step_seconds if setup.step_seconds > 0 else float(evaluations)


def _explain(
    case: Case, setup: _Setup, regions: list[tuple[Region, bool]], coordinates: list
) -> tuple[str, str | None]:
    """The most telling wrong region in the user's terms, and a hint."""
    if not regions:
        worst = max(coordinates, key=lambda c: c.error)
        name = case.diff_names[worst.input]
        return (
            f"`{name}`{list(worst.index)}: expected {worst.numerical:.4g}, got {worst.analytical:.4g}",
            None,
        )
    # the narrowest region whose bounds were verified, among those with an error of the largest's
    # order (a wrong last row also tips every column block, by its 1/√N share)
    largest = max(r.error for r, _ in regions)
    region, closed = max(regions, key=lambda rc: (rc[1], rc[0].error >= 0.1 * largest, -rc[0].fraction))
    name = case.diff_names[region.input]
    shape = setup.shapes()[region.input]
    where = region.describe(shape, _dim_name(case, name, region.dim))
    verb = "is" if region.width == 1 or region.width == region.size else "are"
    if region.factor is not None and region.factor == 0.0:
        how = "backward's gradient there is zero"
    elif region.factor is not None:
        how = f"the gradient there is {region.factor:.4g}× the numerical one"
    else:
        how = f"off by {region.error:.2g} of the gradient's norm there"
    hint = _hint(case, setup, region)
    unverified = "" if closed else " (its bounds are where probing stopped: the budget ran out)"
    return f"`{name}`: {where} {verb} wrong{unverified}: {how}", hint


def _bounded(first: Block, last: Block, passed: set[Block], size: int) -> bool:
    """Whether the blocks just outside a failing run were probed and passed (or are the dim's ends)."""
    left = first.start == 0 or any((b.input, b.dim, b.stop) == (first.input, first.dim, first.start) for b in passed)
    right = last.stop == size or any((b.input, b.dim, b.start) == (last.input, last.dim, last.stop) for b in passed)
    return left and right


def _run_error(run: tuple[Block, Block], failed: list[BlockProbe]) -> float:
    first, last = run
    return max(
        p.error
        for p in failed
        if (p.block.input, p.block.dim) == (first.input, first.dim) and first.start <= p.block.start < last.stop
    )


def _hint(case: Case, setup: _Setup, region: Region) -> str | None:
    if region.factor is None:
        return None
    if region.factor == 0.0:
        return "backward returns zeros there — a loop that stops early, or a mask off by one?"
    if region.fraction == 1.0 and len(setup.cotangents) == 1 and setup.cotangents[0].numel() == 1:
        v = float(setup.cotangents[0])
        if v != 0 and math.isclose(region.factor, 1 / v, rel_tol=1e-3) and not math.isclose(v, 1.0, rel_tol=1e-3):
            return f"backward ignores grad_output (the gradient is 1/grad_output = {region.factor:.3g}× off)"
    if region.fraction < 1.0 and region.factor is not None:
        base = factor_hint(region.factor, case.point.dims)
        slice_note = "right elsewhere: a boundary, a partial last chunk, or an offset in later tiles?"
        return f"{base}; {slice_note}" if base else slice_note
    return factor_hint(region.factor, case.point.dims)


def _dim_name(case: Case, argument: str, dim: int) -> str | None:
    arg = case.spec.args.get(argument)
    shape = getattr(arg, "shape", None)
    if shape and dim < len(shape) and isinstance(shape[dim], str):
        return shape[dim]
    return None


def _region_dict(case: Case, region: Region) -> dict[str, object]:
    return {
        "input": case.diff_names[region.input],
        "dim": region.dim,
        "start": region.start,
        "stop": region.stop,
        "size": region.size,
        "error": region.error,
        "factor": region.factor,
    }


def _block_dict(probe: BlockProbe) -> dict[str, object]:
    b = probe.block
    return {
        "input": b.input,
        "dim": b.dim,
        "start": b.start,
        "stop": b.stop,
        "error": probe.error,
        "allowed": probe.allowed,
    }


def _taylor(case: Case, deadline: float, why: str) -> Outcome:
    dtype = case.working_dtype
    leaves = case.fresh()
    setup = _Setup(case, None, leaves, _timed(lambda: case.call(leaves)))
    plan = setup.plan(float64=False, seconds=deadline - time.perf_counter())
    seed = derive_seed(case.seed, "gradient_blocks", "taylor")
    results, evaluations = [], 0
    for k in range(plan.directions):
        result, calls = taylor_test(setup.scalar, setup.inputs, setup.grads, seed=seed + k)
        results.append(("the whole gradient", result))
        evaluations += calls
    edges = [b for b in partition(setup.shapes()) if b.start == 0 or b.stop == setup.shapes()[b.input][b.dim]]
    for i, block in enumerate(edges[: plan.taylor_blocks]):
        if time.perf_counter() > deadline:
            break
        result, calls = taylor_test(setup.scalar, setup.inputs, setup.grads, seed=seed + 100 + i, block=block)
        results.append((_block_label(case, setup, block), result))
        evaluations += calls
    cost = _cost(evaluations, setup)
    why = f"{why}: Taylor-remainder test in {dtype_name(dtype)}"
    data: dict[str, object] = {
        "plan": plan.to_dict(),
        "evaluations": evaluations,
        "cost_x_forward_backward": cost,
        "taylor": [
            {"where": where, "rate": r.rate, "verdict": r.verdict, "noise": r.noise, "remainders": list(r.remainders)}
            for where, r in results
        ],
    }
    wrong = [(where, r) for where, r in results if r.verdict == "wrong"]
    if wrong:
        where, r = wrong[0]
        size = r.first_order
        amount = f"; first-order error ≈ {size:.2g}× ⟨g, d⟩'s spread" if size is not None else ""
        return Outcome.failed(
            f"{why}: the remainder falls {2**r.rate:.2g}× per halving of the step in {where} "
            f"(4× for a right gradient, 2× for a wrong one){amount}",
            hint="the gradient is wrong (a wrong gradient leaves a first-order remainder)",
            data=data,
        )
    decided = [r for _, r in results if r.verdict == "right"]
    detectable = taylor_detectable([r for _, r in results[: plan.directions]])
    power = f"; detects ≥ {detectable:.0e} of the gradient" if detectable is not None else ""
    if not decided:
        return Outcome.skipped(
            f"{why}: every remainder is at {dtype_name(dtype)}'s rounding floor (inconclusive)", data=data
        )
    return Outcome.passed(
        f"{why}: remainder falls ~4× per halving in {len(decided)} of {len(results)} probes "
        f"({plan.directions} directions, {len(results) - plan.directions} edge blocks){power}; "
        f"{evaluations} forwards ≈ {cost:.0f}× one forward+backward",
        data=data,
    )


def _block_label(case: Case, setup: _Setup, block: Block) -> str:
    name = case.diff_names[block.input]
    shape = setup.shapes()[block.input]
    region = Region(block.input, block.dim, block.start, block.stop, shape[block.dim], 0.0, None)
    return f"`{name}` {region.describe(shape, _dim_name(case, name, block.dim))}"


CHECK = Check.of("gradient_blocks", check_gradient_blocks)

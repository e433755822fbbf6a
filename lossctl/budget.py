"""A case's time budget, planned once as plain data: each costly check's share of it, priced in
forward+backward passes of the case by the check's cost model (lossctl.catalogue)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lossctl.report import CaseResult

RESERVE_SHARE = 0.1
"""The share of what is left of the budget kept back for the unpriced checks (forward, backward,
raw_backward, ...) and for a failure's diagnosis."""
SLOW_MODE_MAX_INPUTS = 2048
"""Up to this many input elements (and SLOW_MODE_MAX_OUTPUTS output elements), gradcheck may build
the full Jacobian (slow mode)."""
SLOW_MODE_MAX_OUTPUTS = 256
MIN_EDGE_PASSES = 0.5
"""edge_sizes' floor in the case's passes, however cheap its shrunk cases measured."""
GRADGRAD_SLOW_MAX_INPUTS = 32
"""gradgradcheck's slow mode differentiates backward once per input and grad_output element."""


@dataclass(frozen=True)
class CostModel:
    """What a check costs in forward+backward passes of the case: `nominal` with its full method,
    `minimum` with its smallest (equal for a fixed method)."""

    nominal: float
    minimum: float
    grows: float = 0.0
    """The share of the plan's slack (what the nominal plan leaves unused) it takes to cover more."""
    discrete: bool = False
    """Two methods and nothing between (gradcheck's full Jacobian or its fast mode): the plan gives
    it its nominal passes or its minimum, never a fraction it could not use."""

    @property
    def adapts(self) -> bool:
        return self.minimum < self.nominal


@dataclass(frozen=True)
class Sizes:
    """What a cost model needs to know of the case: its differentiable input and output elements,
    and for each named dim the input elements left when that dim is 1 (edge_sizes' cases)."""

    inputs: int
    outputs: int
    shrunk_inputs: tuple[int, ...] = ()
    shrunk_cost: tuple[float, ...] = ()
    """For each shrunk case, its measured forward+backward over the case's own: edge_sizes' passes
    are of these tiny cases (a size-bound kernel: ~0; a slow launch-bound one: ~1). Empty: not
    measured, priced as full passes."""


def slow_mode_passes(inputs: int, outputs: int) -> float:
    """gradcheck's full Jacobian: two forwards per input element (each priced as a whole pass: a
    slow kernel's forward can be all of it) and a backward per output element, plus the analytical
    pass."""
    return float(2 * inputs + outputs + 2)


def slow_mode_fits(inputs: int, outputs: int) -> bool:
    return inputs <= SLOW_MODE_MAX_INPUTS and outputs <= SLOW_MODE_MAX_OUTPUTS


def cost_model(
    check_id: str, cost: float | None, min_cost: float | None, grows: float, sizes: Sizes
) -> CostModel | None:
    """A check's cost model on a case of these sizes (None: unpriced, always cheap). Checks that
    build a full Jacobian at small sizes (gradcheck, double_backward, edge_sizes) are priced by it
    there, with their fast mode (one random projection) as their minimum."""
    if cost is None:
        return None
    minimum = cost if min_cost is None else min_cost
    if check_id == "gradcheck" and slow_mode_fits(sizes.inputs, sizes.outputs):
        return CostModel(max(cost, slow_mode_passes(sizes.inputs, sizes.outputs)), minimum, discrete=True)
    if check_id == "double_backward" and sizes.inputs <= GRADGRAD_SLOW_MAX_INPUTS:
        return CostModel(max(cost, 4.0 * (sizes.inputs + sizes.outputs) + 2), minimum, discrete=True)
    if check_id == "edge_sizes":  # fast mode at each size; slow mode where its slack share pays for it
        ratios = sizes.shrunk_cost or (1.0,) * max(len(sizes.shrunk_inputs), 1)
        per_dim = max(sum(ratios) * (3 + cost), MIN_EDGE_PASSES)
        return CostModel(per_dim, per_dim, grows)
    return CostModel(cost, minimum, grows)


@dataclass(frozen=True)
class Allotment:
    """One check's share of the plan: `passes` forward+backward passes ≈ `seconds`; `method`:
    nominal (its full method), reduced (shrunk toward its minimum) or skipped (not even the minimum
    fits)."""

    check: str
    passes: float
    seconds: float
    method: str
    minimum: float
    nominal: float
    spare_s: float = 0.0
    """Of `seconds`, what comes from the plan's slack (a check that grows into it), beyond `passes`."""

    @property
    def reduced(self) -> bool:
        return self.method == "reduced"

    @property
    def share(self) -> float:
        """Where it sits between its minimum (0) and its nominal method (1)."""
        span = self.nominal - self.minimum
        return 1.0 if span <= 0 else max(0.0, min(1.0, (self.passes - self.minimum) / span))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": round(self.passes, 3),
            "seconds": round(self.seconds, 3),
            "method": self.method,
            "min_passes": self.minimum,
            "nominal_passes": self.nominal,
            "spare_s": round(self.spare_s, 3),
        }


NOMINAL, REDUCED, SKIPPED = "nominal", "reduced", "skipped"


@dataclass(frozen=True)
class BudgetPlan:
    """The plan made once per case, before its first costly check."""

    unit_s: float
    """One measured forward+backward of the case, in seconds."""
    budget_s: float
    available_s: float
    """What was left of the budget when planning, less the reserve for unpriced checks."""
    allotments: tuple[Allotment, ...]

    def get(self, check_id: str) -> Allotment | None:
        return next((a for a in self.allotments if a.check == check_id), None)

    @property
    def planned(self) -> tuple[Allotment, ...]:
        return tuple(a for a in self.allotments if a.method != SKIPPED)

    @property
    def passes(self) -> float:
        return sum(a.passes for a in self.planned)

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.planned)

    def skip_reason(self, check_id: str) -> str | None:
        """Why the plan skips this check, or None when it runs."""
        allotment = self.get(check_id)
        if allotment is None or allotment.method != SKIPPED:
            return None
        need = allotment.minimum * self.unit_s
        return (
            f"would need ≥ {allotment.minimum:g}× forward+backward ≈ {seconds_text(need)}; the plan gives the "
            f"{seconds_text(self.available_s)} available of the {self.budget_s:g} s budget to the checks "
            "before it (gradient checks first); raise --budget"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit_s": self.unit_s,
            "budget_s": self.budget_s,
            "available_s": round(self.available_s, 3),
            "passes": round(self.passes, 3),
            "seconds": round(self.seconds, 3),
            "checks": {a.check: a.to_dict() for a in self.allotments},
        }


def seconds_text(seconds: float) -> str:
    """`58 s`, `7.3 s`, `0.012 s`: whole seconds once they are many."""
    return f"{seconds:.0f} s" if abs(seconds) >= 10 else f"{seconds:.2g} s"


def plan_line(case: CaseResult) -> str | None:
    """The -v line of a case's plan, rebuilt from its checks' `data["planned"]`."""
    parts, passes, seconds, spare, growing = [], 0.0, 0.0, 0.0, []
    for result in case.checks:
        planned = result.data.get("planned") if isinstance(result.data, dict) else None
        if not planned:
            continue
        if planned["method"] == SKIPPED:
            parts.append(f"{result.check} skipped")
            continue
        note = " (reduced)" if planned["method"] == REDUCED else ""
        parts.append(f"{result.check} {planned['passes']:.0f}×{note}")
        passes += planned["passes"]
        extra = planned.get("spare_s", 0.0)
        seconds += planned["seconds"] - extra
        if extra > 0:
            spare += extra
            growing.append(result.check)
    if not parts:
        return None
    line = f"{case.case}: plan: {', '.join(parts)} = {passes:.0f}× ≈ {seconds_text(seconds)}"
    if spare > 0:
        line += f" (+ {seconds_text(spare)} of spare budget to {', '.join(growing)}, to cover more)"
    return line


def plan_budget(
    models: Sequence[tuple[str, CostModel, bool]], unit_s: float, available_s: float, budget_s: float
) -> BudgetPlan:
    """Allot each priced check (id, cost model, whether it verifies gradient values; in run order)
    its share of `available_s` at `unit_s` seconds per forward+backward. Everything nominal when
    that fits (a check that grows also gets its share of the slack); else every check starts at its
    minimum, admitted in priority order (gradient checks first) while the minimums fit; what is left
    lifts the discrete ones (two methods) to nominal where it fits, in priority order, then the
    other adaptive ones toward nominal, all by the same fraction."""
    unit = max(unit_s, 0.0)
    available = max(available_s, 0.0)
    nominal = sum(m.nominal for _, m, _ in models) * unit
    if nominal <= available:
        slack = available - nominal
        allotments = tuple(
            Allotment(c, m.nominal, m.nominal * unit + slack * m.grows, NOMINAL, m.minimum, m.nominal, slack * m.grows)
            for c, m, _ in models
        )
        return BudgetPlan(unit, budget_s, available, allotments)
    priority = sorted(range(len(models)), key=lambda k: not models[k][2])  # stable: run order within
    admitted: set[int] = set()
    used = 0.0
    for k in priority:
        need = models[k][1].minimum * unit
        if used + need <= available:
            admitted.add(k)
            used += need
    full: set[int] = set()
    for k in priority:
        model = models[k][1]
        if k in admitted and model.discrete and model.adapts:
            lift = (model.nominal - model.minimum) * unit
            if used + lift <= available:
                full.add(k)
                used += lift
    continuous = [k for k in admitted if not models[k][1].discrete]
    extra = sum(models[k][1].nominal - models[k][1].minimum for k in continuous) * unit
    fraction = min(1.0, (available - used) / extra) if extra > 0 else 1.0
    chosen = []
    for k, (check, model, _) in enumerate(models):
        if k not in admitted:
            chosen.append(Allotment(check, 0.0, 0.0, SKIPPED, model.minimum, model.nominal))
            continue
        if model.discrete:
            passes = model.nominal if k in full or not model.adapts else model.minimum
        else:
            passes = model.minimum + fraction * (model.nominal - model.minimum)
        method = NOMINAL if passes >= model.nominal else REDUCED
        chosen.append(Allotment(check, passes, passes * unit, method, model.minimum, model.nominal))
    return BudgetPlan(unit, budget_s, available, tuple(chosen))

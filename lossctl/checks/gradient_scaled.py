"""`gradient_scaled`: the gradient checked relative to its own scale, so a mean loss is judged as
strictly as a sum loss.

gradcheck compares each element with `atol + rtol·|numerical|`. For a mean over N elements every
gradient element is ~1/N, so at N ≈ 6,400 an all-zero or sign-flipped gradient is within atol=1e-5
and fast mode passes it. This check measures the error relative to the gradient's norm instead:

- directional derivatives of S(x) = ⟨v, f(x)⟩ (v a seeded random grad_output) by central
  differences, along the analytical gradient g itself and along random directions orthogonal to it:
  exact gradients give ⟨∇S, g/‖g‖⟩ = ‖g‖ and ⟨∇S, d⟩ = 0; a factor c gives ‖g‖/c; a flipped sign
  −‖g‖; zeros a nonzero derivative along random directions;
- the largest and some random elements one by one, each relative to max|g|.

The tolerance is the spec's rtol (default 1e-3) of the gradient's scale, raised to 10× the
estimated rounding noise of the finite differences when that is larger; the detail reports the
smallest relative error the check could detect at this size.
"""

from __future__ import annotations

import math

import torch

from lossctl.case import Case
from lossctl.checks.base import Check
from lossctl.checks.common import diagnose_gradients, float64_values, in_backward
from lossctl.diagnose import factor_hint, named_quantities
from lossctl.inputs import derive_seed
from lossctl.report import Outcome

RANDOM_DIRECTIONS = 3
TOP_ELEMENTS = 8
RANDOM_ELEMENTS = 8
NOISE_FACTOR = 10.0
MIN_RANDOM_DIRECTIONS = 2
MIN_ELEMENTS = 2


def method_for(passes: float | None) -> tuple[int, int, int]:
    """(random directions, largest elements, random elements) that fit `passes` forward+backward
    passes of the case (None: the full method). Each measurement is two forwards, priced as one pass
    each; the float64 vjp is one more. The direction along the gradient is always measured."""
    full = (RANDOM_DIRECTIONS, TOP_ELEMENTS, RANDOM_ELEMENTS)
    if passes is None or passes >= 1 + 2 * (1 + sum(full)):
        return full
    pairs = int((passes - 1) // 2) - 1 - MIN_RANDOM_DIRECTIONS  # after ĝ and the minimum random ones
    directions = MIN_RANDOM_DIRECTIONS
    if pairs >= 2 * (RANDOM_DIRECTIONS - directions) + TOP_ELEMENTS + RANDOM_ELEMENTS:
        pairs -= RANDOM_DIRECTIONS - directions
        directions = RANDOM_DIRECTIONS
    elements = max(MIN_ELEMENTS, min(TOP_ELEMENTS + RANDOM_ELEMENTS, pairs))
    return directions, (elements + 1) // 2, elements // 2


def check_gradient_scaled(case: Case) -> Outcome:
    values = float64_values(case)
    dtype = torch.float64
    tol = case.spec.tolerance
    eps = tol.eps
    outputs = case.float64_outputs()
    positions = case.output_positions(outputs)
    cotangents = case.random_cotangents([outputs[p] for p in positions], "gradient_scaled")
    _, grads = case.vjp(case.fresh(dtype), cotangents, dtype)
    x = [values[i].detach() for i in case.diff_indices]  # type: ignore[attr-defined]
    sizes = [t.numel() for t in x]
    g = torch.cat(
        [(torch.zeros_like(t) if gr is None else gr.detach()).reshape(-1).cpu() for t, gr in zip(x, grads, strict=True)]
    ).double()
    flat_x = torch.cat([t.reshape(-1).cpu() for t in x]).double()

    def scalar(flat: torch.Tensor) -> float:
        parts = [p.reshape(t.shape).to(t.device, t.dtype) for p, t in zip(flat.split(sizes), x, strict=True)]
        with torch.no_grad():
            outs = case.call(case.substitute(values, parts), dtype)
        return float(sum(float((outs[p] * v).sum()) for p, v in zip(positions, cotangents, strict=True)))

    unit = torch.finfo(dtype).eps

    def derivative(direction: torch.Tensor) -> tuple[float, float]:
        """Central difference along `direction`, and its rounding noise."""
        plus, minus = scalar(flat_x + eps * direction), scalar(flat_x - eps * direction)
        noise = NOISE_FACTOR * unit * (abs(plus) + abs(minus)) / (2 * eps)
        return (plus - minus) / (2 * eps), noise

    gen = torch.Generator().manual_seed(derive_seed(case.seed, "gradient_scaled"))
    allotment = case.allotment("gradient_scaled")
    random_directions, top_elements, random_elements = method_for(
        allotment.passes if allotment is not None and allotment.reduced else None
    )
    norm = float(g.norm())
    directions: list[tuple[str, torch.Tensor, float]] = []  # (label, unit direction, analytical value)
    basis = [g / norm] if norm > 0 else []
    if basis:
        directions.append(("along the gradient", basis[0], norm))
    for _ in range(random_directions):
        d = torch.randn(g.numel(), generator=gen, dtype=torch.float64)
        for b in basis:
            d -= d.dot(b) * b
        if float(d.norm()) == 0.0:
            continue
        d /= d.norm()
        basis.append(d)
        directions.append(("random", d, float(g.dot(d))))
    measured = [(label, analytic, *derivative(d)) for label, d, analytic in directions]

    # The true gradient's norm, estimated from the numerical derivatives: along g it is ≥ the
    # projection; along k random orthonormal directions Σ⟨∇S,d⟩² ≈ k‖∇S‖²/n.
    random_sq = [num * num for label, _, num, _ in measured if label == "random"]
    estimate = math.sqrt(g.numel() * sum(random_sq) / len(random_sq)) if random_sq else 0.0
    along = next((abs(num) for label, _, num, _ in measured if label != "random"), 0.0)
    scale = max(norm, along, estimate)
    if scale == 0.0:
        return Outcome.passed("gradient and finite differences are both exactly zero")

    worst_dir, dir_floor = 0.0, 0.0
    for _, analytic, num, noise in measured:
        worst_dir = max(worst_dir, abs(num - analytic) / scale)
        dir_floor = max(dir_floor, noise / scale)

    # Elements: the largest analytical ones and a few random ones.
    top = torch.topk(g.abs(), min(top_elements, g.numel())).indices
    rand = torch.randperm(g.numel(), generator=gen)[:random_elements]
    elements = torch.unique(torch.cat([top, rand]))
    element_scale = float(g.abs().max())
    element_results = []
    for index in elements.tolist():
        e = torch.zeros_like(g)
        e[index] = 1.0
        num, noise = derivative(e)
        element_results.append((index, float(g[index]), num, noise))
    element_scale = max(element_scale, max(abs(num) for _, _, num, _ in element_results))
    worst_elem, elem_floor = 0.0, 0.0
    for _, analytic, num, noise in element_results:
        worst_elem = max(worst_elem, abs(num - analytic) / element_scale)
        elem_floor = max(elem_floor, noise / element_scale)

    allowed = max(tol.rtol, dir_floor, elem_floor)
    rms = (norm or scale) / math.sqrt(g.numel())
    data = {
        "rel_err_directions": worst_dir,
        "rel_err_elements": worst_elem,
        "tolerance": allowed,
        "noise_floor": max(dir_floor, elem_floor),
        "grad_norm": norm,
        "elements": g.numel(),
        "rms_element_over_gradcheck_atol": rms / tol.atol if tol.atol else math.inf,
    }
    if worst_dir <= allowed and worst_elem <= allowed:
        reduced = " (reduced to fit the budget plan)" if allotment is not None and allotment.reduced else ""
        return Outcome.passed(
            f"error {max(worst_dir, worst_elem):.1e}·‖∇‖ over {len(measured)} directions and "
            f"{len(element_results)} elements{reduced}; detects ≥ {allowed:.0e}·‖∇‖ along ĝ or spread over "
            f"the gradient (an error in k of the {g.numel()} elements, off ĝ, shows diluted to ~√(k/n) of "
            f"its size along a random direction) and ≥ {allowed:.0e}·max|g| at each measured element "
            f"(an average element is {rms / tol.atol:.2g}× gradcheck's atol)",
            data={**data, "directions": len(measured), "measured_elements": len(element_results)},
        )
    hint = _hint(case, measured, norm, scale, allowed)
    # Name the worst elements, judged relative to the gradient's largest element.
    mismatches = diagnose_gradients(case, values, atol=allowed * element_scale, rtol=allowed)
    detail = f"error {max(worst_dir, worst_elem):.3g} of the gradient's scale (allowed {allowed:.0e})"
    if mismatches:
        worst = max(mismatches, key=lambda m: m.rel_err if math.isfinite(m.rel_err) else math.inf)
        detail = f"{worst.summary()}; {detail}"
        data["mismatches"] = [m.to_dict() for m in mismatches]
        # a slice found wrong by bisection says more than a factor fitted along the whole gradient
        hint = worst.hint if worst.localized and worst.hint else hint or worst.hint
    return Outcome.failed(detail, hint=in_backward(case, hint), data=data)


def _hint(
    case: Case, measured: list[tuple[str, float, float, float]], norm: float, scale: float, allowed: float
) -> str | None:
    """A factor or sign when the gradient is off by a constant (random directions agree)."""
    if norm == 0.0:
        return "backward returns zeros — a detach, or the wrong branch?"
    along = next(((analytic, num) for label, analytic, num, _ in measured if label != "random"), None)
    if along is None or along[1] == 0.0:
        return None
    random_ok = all(abs(num - a) <= allowed * scale for label, a, num, _ in measured if label == "random")
    if not random_ok:
        return None
    quantities = named_quantities(case.names, case.values, case.point.dims)
    return factor_hint(along[0] / along[1], quantities)  # ‖g‖ / ⟨∇S, ĝ⟩ = c when g = c·∇S


CHECK = Check.of("gradient_scaled", check_gradient_scaled)

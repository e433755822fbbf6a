"""Gradient probes that scale: blockwise directional derivatives, bisection to the wrong slice,
boundary coordinates, the Taylor-remainder test, and a planner that fits them into a time budget.

Everything here takes plain callables — `scalar(inputs) -> float` for S(x) = ⟨v, f(x)⟩ with a fixed
cotangent v, and the analytical gradients of S — so any check (or a test) can call it. Torch only,
no printing.

Why blocks: along a random direction d over the whole tensor, an error e confined to one chunk shows
only as ⟨e, d⟩ ~ ‖e‖ while the derivative's natural size is ⟨g, d⟩ ~ ‖g‖; if the chunk holds 1 % of
the gradient's norm the error is 1 % of the signal, under most tolerances. With d supported on that
chunk, both sides shrink to the chunk and the error shows at full strength. Directions have i.i.d.
N(0, 1) entries, so ⟨e, d⟩ ~ N(0, ‖e_B‖²) exactly: the statistic's distribution (and with it the
detection power we state) holds for any error, not just a typical one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

Scalar = Callable[[Sequence[torch.Tensor]], float]
"""S(inputs) as a Python float: the quantity whose gradient is checked."""

TILE_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
"""Chunk and tile widths kernels commonly use: the start of each one's last (partial) tile is a block edge."""
NOISE_FACTOR = 10.0
"""How far above u·|S|/h the rounding in a central difference may reach (as gradient_scaled uses)."""
MISS_PROBABILITY = 0.01
"""The stated detection power is the error size caught with at least 1 − this probability."""
CONFIRM_STEP = 4.0
"""A suspicious probe is measured again with this many times the step: a wrong gradient gives the
same difference, truncation error grows 16×, rounding shrinks 4×."""
CONFIRM_ENOUGH = 2
"""After this many confirmed mismatches the verdict is FAIL: later suspicious probes only shape
the localisation and are taken as they are (no re-measuring)."""
CLEAN = 16.0
"""A Taylor remainder counts when it is this far above the rounding floor: noise then moves a
convergence rate by at most log2(17/15) ≈ 0.18, well inside the gap between 1 (wrong) and 2 (right)."""
TAYLOR_STEPS = 20
"""Step halvings in the Taylor test: h = 1, 1/2, …, 2⁻¹⁹ (in units of the inputs' spread)."""
NOISE_STEPS = 4
"""The smallest steps, where the even part S(x+hd) + S(x−hd) − 2S(x) (no gradient in it) is only
rounding: the Taylor test's noise floor is twice its largest value there."""


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """Indices [start, stop) along one dim of one input (every index along the other dims)."""

    input: int
    dim: int
    start: int
    stop: int

    @property
    def width(self) -> int:
        return self.stop - self.start

    def index(self) -> tuple[slice, ...]:
        return (slice(None),) * self.dim + (slice(self.start, self.stop),)

    def numel(self, shape: Sequence[int]) -> int:
        return math.prod(shape) // max(shape[self.dim], 1) * self.width


def block_edges(n: int, stride: int = 1) -> list[int]:
    """Where to cut a dim of size n: its first and last index, every power of two (every
    `stride`-th one when a budget asks for fewer blocks), and the start of the last (partial) tile
    for each usual tile width. O(log n) edges."""
    edges = {0, n}
    if n > 1:
        edges |= {1, n - 1}
    power = 2**stride
    while power < n:
        edges.add(power)
        power *= 2**stride
    for tile in TILE_SIZES:
        if tile < n:
            edges.add((n - 1) // tile * tile)
    return sorted(edges)


def partition(shapes: Sequence[Sequence[int]], stride: int = 1) -> list[Block]:
    """Every input cut along every dim (of size > 1) at `block_edges`, in the order to probe them:
    in each dim the blocks nearest its ends first, and the dims interleaved (shortest first), so a
    budget that runs out leaves every dim's ends probed."""
    per_dim = []
    for position, shape in enumerate(shapes):
        for dim, size in sorted(enumerate(shape), key=lambda item: item[1]):
            if size < 2:
                continue
            cut = [Block(position, dim, a, b) for a, b in itertools.pairwise(block_edges(size, stride))]
            per_dim.append(sorted(cut, key=lambda b, n=size: min(b.start, n - b.stop)))
    return [block for row in itertools.zip_longest(*per_dim) for block in row if block is not None]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BlockProbe:
    """Directional derivatives on one block: numerical (central differences) vs analytical ⟨g, d⟩."""

    block: Block
    numerical: tuple[float, ...]
    analytical: tuple[float, ...]
    scale: float
    """The natural size of one such derivative: ‖g_B‖ (⟨g, d⟩ ~ N(0, ‖g_B‖²)), at least the tolerance
    times the average element's share (so a quiet block is not judged against rounding)."""
    noise: float
    """Rounding floor of the differences, in the derivative's units (root mean square)."""
    tolerance: float
    confirmed: bool = False
    """The mismatch persisted when the step was multiplied by CONFIRM_STEP."""

    @property
    def error(self) -> float:
        """Root-mean-square mismatch relative to the scale."""
        residual = _rms([n - a for n, a in zip(self.numerical, self.analytical, strict=True)])
        if not math.isfinite(residual):
            return math.inf
        if self.scale == 0.0:
            return 0.0 if residual == 0.0 else math.inf
        return residual / self.scale

    @property
    def allowed(self) -> float:
        return max(self.tolerance, self.noise / self.scale) if self.scale > 0 else math.inf

    @property
    def suspicious(self) -> bool:
        return self.error > self.allowed

    @property
    def failed(self) -> bool:
        return self.suspicious and self.confirmed

    def factor(self) -> float | None:
        """c with analytical ≈ c·numerical in every direction (to 1 %), else None."""
        return fitted_factor(self.numerical, self.analytical)


@dataclass(frozen=True)
class CoordinateProbe:
    """One element's derivative by central differences vs the analytical gradient there."""

    input: int
    index: tuple[int, ...]
    numerical: float
    analytical: float
    scale: float
    noise: float
    tolerance: float
    confirmed: bool = False

    @property
    def error(self) -> float:
        residual = abs(self.numerical - self.analytical)
        if not math.isfinite(residual):
            return math.inf
        return residual / self.scale if self.scale > 0 else (0.0 if residual == 0.0 else math.inf)

    @property
    def suspicious(self) -> bool:
        return self.error > max(self.tolerance, self.noise / self.scale if self.scale > 0 else 0.0)

    @property
    def failed(self) -> bool:
        return self.suspicious and self.confirmed


@dataclass(frozen=True)
class Region:
    """A contiguous range along one dim where the gradient is wrong, found by bisection."""

    input: int
    dim: int
    start: int
    stop: int
    size: int
    """The dim's length."""
    error: float
    """Relative mismatch of the region's directional derivatives (as BlockProbe.error)."""
    factor: float | None
    """c when the analytical gradient there is c × the numerical one."""

    @property
    def width(self) -> int:
        return self.stop - self.start

    @property
    def fraction(self) -> float:
        return self.width / self.size

    def describe(self, shape: Sequence[int], dim_name: str | None = None) -> str:
        """'rows 4096–4999 of N=5000 (the last 904 rows)' in the input's own terms."""
        one, many = _units(self.dim, len(shape))
        label = f"{dim_name}={self.size}" if dim_name else f"dim {self.dim} (size {self.size})"
        if self.width == self.size:
            return f"every {one} of {label}"
        if self.width == 1:
            where = " (the last one)" if self.stop == self.size else " (the first one)" if self.start == 0 else ""
            return f"{one} {self.start} of {label}{where}"
        where = ""
        if self.stop == self.size:
            where = f" (the last {self.width} {many})"
        elif self.start == 0:
            where = f" (the first {self.width} {many})"
        return f"{many} {self.start}–{self.stop - 1} of {label}{where}"


def _units(dim: int, ndim: int) -> tuple[str, str]:
    if ndim == 1:
        return "element", "elements"
    if dim == 0:
        return "row", "rows"
    if dim == ndim - 1:
        return "column", "columns"
    return f"index along dim {dim}", f"indices along dim {dim}"


# --------------------------------------------------------------------------- the prober


class Prober:
    """Directional derivatives of `scalar` on blocks and single elements, compared with `grads`.

    The inputs are perturbed in place and restored bit for bit, so a probe costs O(block) extra
    memory and two evaluations of `scalar`. `evaluations` counts every call."""

    def __init__(
        self,
        scalar: Scalar,
        inputs: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor | None],
        *,
        eps: float,
        tolerance: float,
        seed: int,
        directions: int = 2,
    ) -> None:
        self.scalar = scalar
        self.inputs = [t.detach().clone() for t in inputs]
        self.grads = [
            (torch.zeros_like(x) if g is None else g.detach()).to(torch.float64)
            for x, g in zip(self.inputs, grads, strict=True)
        ]
        self.shapes = [tuple(t.shape) for t in self.inputs]
        self.eps = eps
        self.tolerance = tolerance
        self.directions = directions
        self.generator = torch.Generator().manual_seed(seed)
        self.unit = max(torch.finfo(t.dtype).eps for t in self.inputs) if self.inputs else 2.0**-52
        self.evaluations = 0
        self.confirmed = 0
        """Mismatches confirmed by re-measuring so far."""
        self.allowed = tolerance
        """The largest relative mismatch any block probe so far allowed (tolerance or rounding)."""
        self.base = self._evaluate()
        total = sum(float(g.square().sum()) for g in self.grads)
        numel = sum(g.numel() for g in self.grads)
        self.element_rms = math.sqrt(total / numel) if numel else 0.0
        """The average element's gradient size: errors far below it in a quiet block are not errors."""

    def _evaluate(self) -> float:
        self.evaluations += 1
        return float(self.scalar(self.inputs))

    def _difference(self, position: int, index: tuple[slice | int, ...], direction: torch.Tensor, step: float):
        """(S(x + h·d) − S(x − h·d)) / 2h with d on `index` of one input, and its rounding floor."""
        region = self.inputs[position][index]
        saved = region.clone()
        delta = (step * direction).to(region.dtype)
        try:
            region.add_(delta)
            plus = self._evaluate()
            region.copy_(saved).sub_(delta)
            minus = self._evaluate()
        finally:
            region.copy_(saved)
        noise = NOISE_FACTOR * self.unit * (abs(plus) + abs(minus) + abs(self.base)) / (2 * step)
        return (plus - minus) / (2 * step), noise

    def _direction(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator, dtype=torch.float64)

    def probe(self, block: Block, directions: int | None = None) -> BlockProbe:
        """k random directions on the block; a suspicious result is re-measured with a larger step."""
        index = block.index()
        grad = self.grads[block.input][index]
        grad_cpu = grad.cpu()
        # one block-sized direction alive at a time (the same draws as drawing them all first)
        first: torch.Tensor | None = None
        products, measured = [], []
        for _ in range(directions or self.directions):
            d = self._direction(grad.shape)
            first = d if first is None else first
            products.append(float((grad_cpu * d).sum()))
            measured.append(self._difference(block.input, index, d.to(grad.device), self.eps))
            del d
        analytical = tuple(products)
        numerical = tuple(m[0] for m in measured)
        gradient_norm = float(grad.norm())
        floor = self.tolerance * self.element_rms * math.sqrt(grad.numel())
        scale = max(gradient_norm, floor)
        if scale == 0.0 and all(map(math.isfinite, numerical)):  # backward returned zeros everywhere
            scale = _rms(list(numerical))
        result = BlockProbe(
            block=block,
            numerical=numerical,
            analytical=analytical,
            scale=scale,
            noise=_rms([m[1] for m in measured]),
            tolerance=self.tolerance,
        )
        self.allowed = max(self.allowed, result.allowed if math.isfinite(result.allowed) else 0.0)
        if not result.suspicious:
            return result
        if self.confirmed >= CONFIRM_ENOUGH:  # the verdict is decided; this only shapes the localisation
            return BlockProbe(**{**result.__dict__, "confirmed": True})
        # one direction suffices to tell a persistent mismatch from truncation or rounding
        assert first is not None
        again = self._difference(block.input, index, first.to(grad.device), self.eps * CONFIRM_STEP)[0]
        result = _with_confirmation(result, numerical[:1], [again])
        self.confirmed += result.confirmed
        return result

    def fails(self, block: Block) -> BlockProbe | None:
        """Whether a block fails, with at most two directions (bisection asks O(log n) times)."""
        probe = self.probe(block, directions=min(self.directions, 2))
        return probe if probe.failed else None

    def coordinate(self, position: int, index: tuple[int, ...]) -> CoordinateProbe:
        """The exact central difference at one element."""
        unit = torch.ones((), dtype=torch.float64)
        numerical, noise = self._difference(position, index, unit, self.eps)
        analytical = float(self.grads[position][index])
        result = CoordinateProbe(
            input=position,
            index=index,
            numerical=numerical,
            analytical=analytical,
            scale=max(abs(analytical), abs(numerical) if math.isfinite(numerical) else 0.0, self.element_rms),
            noise=noise,
            tolerance=self.tolerance,
        )
        if not result.suspicious:
            return result
        if self.confirmed >= CONFIRM_ENOUGH:
            return CoordinateProbe(**{**result.__dict__, "confirmed": True})
        again, _ = self._difference(position, index, unit, self.eps * CONFIRM_STEP)
        persisted = abs(again - numerical) <= 0.5 * abs(numerical - analytical)
        self.confirmed += persisted
        return CoordinateProbe(**{**result.__dict__, "confirmed": persisted})

    def detectable(self, allowed: float | None = None) -> float:
        """The error, relative to a block's true gradient, that one block probe catches with
        probability ≥ 1 − MISS_PROBABILITY at an allowance (default: the largest used so far):
        mean r² is exactly ‖e‖²·χ²_k/k, and the scale it is divided by, ‖g_B‖, is at most
        (1 + X)·‖∇S_B‖."""
        allowed = self.allowed if allowed is None else allowed
        t = allowed / math.sqrt(chi2_quantile(MISS_PROBABILITY, self.directions) / self.directions)
        return t / (1.0 - t) if t < 1.0 else math.inf


def _with_confirmation(result: BlockProbe, first: Sequence[float], again: Sequence[float]) -> BlockProbe:
    """A real gradient error gives the same difference at both steps (to within half the mismatch)."""
    mismatch = _rms([n - a for n, a in zip(first, result.analytical[: len(first)], strict=True)])
    drift = _rms([b - a for a, b in zip(first, again, strict=True)])
    persisted = not math.isfinite(mismatch) or drift <= 0.5 * mismatch
    return BlockProbe(**{**result.__dict__, "confirmed": persisted})


# --------------------------------------------------------------------------- localisation


def merge_failures(failed: Sequence[BlockProbe]) -> list[tuple[Block, Block]]:
    """Adjacent failing blocks along one dim of one input as (first block, last block) runs."""
    runs: list[tuple[Block, Block]] = []
    for probe in sorted(failed, key=lambda p: (p.block.input, p.block.dim, p.block.start)):
        block = probe.block
        if runs:
            first, last = runs[-1]
            if (last.input, last.dim, last.stop) == (block.input, block.dim, block.start):
                runs[-1] = (first, block)
                continue
        runs.append((block, block))
    return runs


def localize(prober: Prober, first: Block, last: Block) -> Region:
    """The first and last wrong index of a run of failing blocks, by bisection inside its end
    blocks: O(log width) probes, never a Jacobian."""
    size = prober.shapes[first.input][first.dim]
    lo, hi = first.start, first.stop
    while hi - lo > 1:  # [lo, hi) holds the first wrong index
        mid = (lo + hi) // 2
        if prober.fails(Block(first.input, first.dim, lo, mid)):
            hi = mid
        else:
            lo = mid
    start = lo
    lo, hi = max(last.start, start), last.stop
    while hi - lo > 1:  # [lo, hi) holds the last wrong index
        mid = (lo + hi) // 2
        if prober.fails(Block(last.input, last.dim, mid, hi)):
            lo = mid
        else:
            hi = mid
    stop = lo + 1
    summary = prober.probe(Block(first.input, first.dim, start, stop), directions=2)
    return Region(first.input, first.dim, start, stop, size, summary.error, summary.factor())


# --------------------------------------------------------------------------- coordinates


def boundary_coordinates(shape: Sequence[int], limit: int, seed: int) -> list[tuple[int, ...]]:
    """Up to `limit` element indices: for each dim its first and last index (the others random),
    then both sides of every block edge, then random ones; every index when the tensor is that small."""
    numel = math.prod(shape)
    if numel == 0:
        return []
    if numel <= limit:
        return [
            tuple(int(i) for i in idx)
            for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(numel, -1).tolist()
        ]
    gen = torch.Generator().manual_seed(seed)

    def random_index() -> list[int]:
        return [int(torch.randint(s, (), generator=gen)) for s in shape]

    chosen: dict[tuple[int, ...], None] = {}
    for dim, size in enumerate(shape):
        for at in (0, size - 1):
            idx = random_index()
            idx[dim] = at
            chosen[tuple(idx)] = None
    sides = [(dim, i) for dim, size in enumerate(shape) for e in block_edges(size)[1:-1] for i in (e - 1, e)]
    for dim, at in sides:
        if len(chosen) >= limit:
            break
        idx = random_index()
        idx[dim] = at
        chosen[tuple(idx)] = None
    while len(chosen) < limit:
        chosen[tuple(random_index())] = None
    return list(chosen)[: max(limit, 2 * len(shape))]


# --------------------------------------------------------------------------- the Taylor test


@dataclass(frozen=True)
class TaylorResult:
    """First-order remainders R(h) = |S(x + h·d) − S(x) − h⟨g, d⟩| along one direction."""

    steps: tuple[float, ...]
    remainders: tuple[float, ...]
    noise: float
    """The rounding floor of R, measured from the even part at the smallest steps."""
    spread: float
    """σ of ⟨g, d⟩ (‖g‖ times the direction's per-element size)."""
    rate: float | None
    """log2 of R's fall per halving of h at the smallest step still clean of rounding."""
    threshold: float | None
    """R/h there: the smallest |⟨∇S − g, d⟩| that would have pulled the rate towards 1."""

    @property
    def verdict(self) -> str:
        """'right' (R falls ~4× per halving), 'wrong' (~2×) or 'inconclusive' (R is rounding)."""
        if self.rate is None:
            return "inconclusive"
        return "right" if self.rate >= 1.5 else "wrong"

    @property
    def first_order(self) -> float | None:
        """|⟨∇S − g, d⟩| / σ estimated from the smallest clean step (meaningful when wrong)."""
        if self.threshold is None or self.spread == 0:
            return None
        return self.threshold / self.spread


def taylor_test(
    scalar: Scalar,
    inputs: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    *,
    seed: int,
    block: Block | None = None,
    steps: int = TAYLOR_STEPS,
) -> tuple[TaylorResult, int]:
    """The Taylor-remainder test in the inputs' own dtype (for Functions that cannot run float64):
    R(h) falls 4× per halving of h when g is the gradient and 2× when it is not. No tolerance: the
    rate at the smallest step whose R is CLEAN× above the measured rounding floor decides. Returns
    the result and the evaluations it took."""
    xs = [t.detach().clone() for t in inputs]
    gs = [(torch.zeros_like(x) if g is None else g.detach()).to(torch.float64) for x, g in zip(xs, grads, strict=True)]
    gen = torch.Generator().manual_seed(seed)
    calls = 0

    def evaluate() -> float:
        nonlocal calls
        calls += 1
        return float(scalar(xs))

    targets = [(block.input, block.index())] if block else [(i, (slice(None),)) for i in range(len(xs))]
    originals = [xs[i][index].clone() for i, index in targets]
    spreads = [float(o.double().square().mean().sqrt()) or 1.0 for o in originals]
    directions = [
        torch.randn(tuple(o.shape), generator=gen, dtype=torch.float64) * s
        for o, s in zip(originals, spreads, strict=True)
    ]
    spread = math.sqrt(
        sum(float(gs[i][index].square().sum()) * s * s for (i, index), s in zip(targets, spreads, strict=True))
    )

    def place(perturbed: Sequence[torch.Tensor]) -> None:
        for (i, index), value in zip(targets, perturbed, strict=True):
            xs[i][index] = value

    base = evaluate()
    hs, rs, evens = [], [], []
    for k in range(steps):
        h = 2.0**-k
        values = []
        for sign in (1.0, -1.0):
            moved = [
                (o.double() + sign * h * d.to(o.device)).to(o.dtype) for o, d in zip(originals, directions, strict=True)
            ]
            # the step actually taken (x + h·d rounds to the dtype): the linear term must use it
            linear = sum(
                float((gs[i][index] * (m.double() - o.double())).sum())
                for (i, index), m, o in zip(targets, moved, originals, strict=True)
            )
            place(moved)
            values.append((evaluate(), linear))
        (plus, linear), (minus, _) = values
        rs.append(abs(plus - base - linear))
        # S(x+hd) + S(x−hd) − 2S(x) holds no gradient: ½h²·dᵀHd, then, at small h, only rounding
        evens.append(abs(plus + minus - 2 * base) / 2)
        hs.append(h)
    place(originals)
    # At the smallest steps a small block's move can vanish in S's last digit (S unchanged, the
    # linear term not): S's own resolution in the inputs' dtype is a floor too.
    resolution = max(torch.finfo(x.dtype).eps for x in xs) * abs(base)
    noise = 2 * max(*evens[-NOISE_STEPS:], resolution)
    clean = [r > CLEAN * noise and math.isfinite(r) for r in rs]
    rate = threshold = None
    for k in range(len(rs) - 2, -1, -1):  # the smallest clean consecutive pair
        if clean[k] and clean[k + 1]:
            rate = math.log2(rs[k] / rs[k + 1])
            threshold = rs[k + 1] / hs[k + 1]
            break
    return TaylorResult(tuple(hs), tuple(rs), noise, spread, rate, threshold), calls


def taylor_detectable(results: Sequence[TaylorResult]) -> float | None:
    """The error, relative to ‖g‖ in the directions' metric, that k directions catch with probability
    ≥ 1 − MISS_PROBABILITY: one catches it when |⟨e, d⟩| ≥ R/h at its smallest clean step."""
    thresholds = [r.threshold / r.spread for r in results if r.threshold is not None and r.spread > 0]
    if not thresholds:
        return None
    k = len(thresholds)
    # P(|z| < t)^k = MISS  ⇒  t = erfinv(MISS^(1/k))·√2
    t = math.sqrt(2.0) * _erfinv(MISS_PROBABILITY ** (1.0 / k))
    return max(thresholds) / t


# --------------------------------------------------------------------------- the planner


PROBE_OVERHEAD = 1.5
"""An evaluation inside a probe costs this many forwards (drawing the direction, moving the block)."""
FULL_MAX_ELEMENTS = 256
"""Up to this many input elements every coordinate is differenced (the full gradient of S)."""
COORDINATES_PER_INPUT = 32
DIRECTION_CHOICES = (4, 2, 1)


@dataclass(frozen=True)
class Plan:
    """How many probes a check spends, chosen to fit a time budget, and what that costs."""

    method: str
    """'blocks' (float64 central differences) or 'taylor' (the working dtype's Taylor test)."""
    blocks: int
    stride: int
    """Block edges at every `stride`-th power of two (1: all of them)."""
    directions: int
    coordinates: int
    every_coordinate: bool
    taylor_blocks: int
    evaluations: int
    """Planned evaluations of S (forwards), not counting a failure's localisation."""
    localize_reserve: int
    """Evaluations a failure's bisection may add (O(log numel))."""
    forward_seconds: float
    step_seconds: float
    """One forward + backward of the case."""
    budget_seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def cost(self) -> float:
        """Planned time as a multiple of one forward + backward."""
        if self.step_seconds <= 0:
            return float(self.evaluations)
        return self.evaluations * self.forward_seconds / self.step_seconds

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "blocks": self.blocks,
            "stride": self.stride,
            "directions": self.directions,
            "coordinates": self.coordinates,
            "every_coordinate": self.every_coordinate,
            "taylor_blocks": self.taylor_blocks,
            "evaluations": self.evaluations,
            "localize_reserve": self.localize_reserve,
            "forward_seconds": self.forward_seconds,
            "step_seconds": self.step_seconds,
            "budget_seconds": self.budget_seconds,
            "cost_x_forward_backward": self.cost,
            "notes": list(self.notes),
        }


def plan_probes(
    shapes: Sequence[Sequence[int]],
    *,
    forward_seconds: float,
    step_seconds: float,
    budget_seconds: float,
    float64: bool = True,
) -> Plan:
    """Pick probe counts for inputs of `shapes` so that the evaluations fit `budget_seconds`:
    every coordinate when tiny, else O(log numel) blocks × k directions plus sampled coordinates
    (k as large as fits, from 8 down to 1); in 'taylor' mode the whole tensor plus the edge blocks."""
    numel = sum(math.prod(s) for s in shapes)
    cost = forward_seconds * PROBE_OVERHEAD
    available = budget_seconds / cost if cost > 0 else math.inf
    blocks = partition(shapes)
    longest = max((max(s) for s in shapes if len(s)), default=1)
    depth = 2 * max(1, math.ceil(math.log2(max(longest, 2))))  # both ends of one failing run
    notes: list[str] = []
    if not float64:
        per_direction = 2 * TAYLOR_STEPS + 1
        edge = [b for b in blocks if b.start == 0 or b.stop == shapes[b.input][b.dim]]
        directions = next((k for k in (4, 2) if k * per_direction <= available / 2), 1)
        whole = directions * per_direction
        taylor_blocks = min(len(edge), max(0, int((available - whole) // per_direction)))
        if taylor_blocks < len(edge):
            notes.append(f"{len(edge) - taylor_blocks} edge blocks left out to fit the budget")
        return Plan(
            "taylor",
            blocks=0,
            stride=1,
            directions=directions,
            coordinates=0,
            every_coordinate=False,
            taylor_blocks=taylor_blocks,
            evaluations=whole + taylor_blocks * per_direction,
            localize_reserve=0,
            forward_seconds=forward_seconds,
            step_seconds=step_seconds,
            budget_seconds=budget_seconds,
            notes=tuple(notes),
        )
    every = numel <= FULL_MAX_ELEMENTS
    sampled = numel if every else sum(min(math.prod(s), COORDINATES_PER_INPUT) for s in shapes)
    minimal = sum(min(math.prod(s), 2 * len(s)) for s in shapes)
    # finer blocks before more directions: structure (a row, a tile) is what hides bugs
    options = [(1, k, sampled) for k in DIRECTION_CHOICES if k > 1] + [(stride, 1, minimal) for stride in (1, 2, 3, 4)]
    for stride, k, coordinates in options:
        count = len(partition(shapes, stride))
        evaluations = 1 + 2 * k * count + 2 * coordinates
        if evaluations <= available:
            break
    else:
        notes.append(f"over budget: {evaluations} evaluations planned, about {available:.0f} fit")
    reserve = 2 * min(k, 2) * depth + 4  # a failure's bisection, past the budget if need be
    return Plan(
        "blocks",
        blocks=count,
        stride=stride,
        directions=k,
        coordinates=coordinates,
        every_coordinate=every,
        taylor_blocks=0,
        evaluations=evaluations,
        localize_reserve=reserve,
        forward_seconds=forward_seconds,
        step_seconds=step_seconds,
        budget_seconds=budget_seconds,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- small maths


def fitted_factor(numerical: Sequence[float], analytical: Sequence[float]) -> float | None:
    """c with analytical ≈ c·numerical to within 1 % of ‖analytical‖ (None for one pair or no fit)."""
    if len(numerical) < 2 or not all(map(math.isfinite, [*numerical, *analytical])):
        return None
    denom = sum(n * n for n in numerical)
    if denom == 0.0:
        return None
    c = sum(n * a for n, a in zip(numerical, analytical, strict=True)) / denom
    residual = math.sqrt(sum((a - c * n) ** 2 for n, a in zip(numerical, analytical, strict=True)))
    norm = math.sqrt(sum(a * a for a in analytical))
    return c if residual <= 1e-2 * max(norm, abs(c) * math.sqrt(denom)) else None


def chi2_quantile(probability: float, k: int) -> float:
    """x with P(χ²_k < x) = probability (bisection on the regularized lower incomplete gamma)."""
    lo, hi = 0.0, max(10.0, 10.0 * k)
    for _ in range(200):
        mid = (lo + hi) / 2
        if _lower_gamma_regularized(k / 2, mid / 2) < probability:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _lower_gamma_regularized(s: float, x: float) -> float:
    if x <= 0:
        return 0.0
    term = total = 1.0 / s
    for n in range(1, 1000):
        term *= x / (s + n)
        total += term
        if term < total * 1e-15:
            break
    return math.exp(s * math.log(x) - x - math.lgamma(s)) * total


def _erfinv(y: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _rms(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    return math.sqrt(sum(v * v for v in values) / len(values))

"""Numerical gradients and the analysis that turns a gradient mismatch into a readable diagnosis."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

ScalarFn = Callable[[list[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class ElementError:
    index: tuple[int, ...]
    expected: float
    got: float

    def describe(self) -> str:
        return f"[{', '.join(map(str, self.index))}] expected {self.expected:.4g}, got {self.got:.4g}"


@dataclass(frozen=True)
class GradMismatch:
    """How one argument's analytical gradient (`got`) differs from the numerical one."""

    argument: str
    max_abs: float
    rel_err: float
    """||got − expected|| / ||expected|| over the checked elements."""
    bad: int
    """Elements outside atol + rtol·|expected|."""
    checked: int
    total: int
    worst: tuple[ElementError, ...]
    scale: float | None
    """c when got ≈ c·expected holds closely, else None."""
    hint: str | None
    heatmap: tuple[tuple[float, ...], ...] = ()
    """|expected − got| pooled to at most 16×48 cells (when every element was checked)."""
    localized: str | None = None
    """The wrong slice found by bisection at scale ("rows 4096–4999 of N=5000 …: 0.78× the numerical")."""

    def summary(self) -> str:
        """One line: the argument, how many elements are wrong, the worst one, the relative error."""
        where = self.worst[0].describe() if self.worst else ""
        if self.localized is not None:
            return (
                f"`{self.argument}`: {self.localized} (bisected); {self.bad}/{self.checked} elements measured "
                f"exactly are wrong (of {self.total}); worst {where}"
            )
        sampled = "" if self.checked == self.total else f" (of {self.total}, sampled)"
        return (
            f"`{self.argument}`: {self.bad}/{self.checked} elements wrong{sampled}; worst {where}; "
            f"rel err {self.rel_err:.3g}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "argument": self.argument,
            "max_abs_err": self.max_abs,
            "rel_err": self.rel_err,
            "bad_elements": self.bad,
            "checked_elements": self.checked,
            "total_elements": self.total,
            "worst": [{"index": list(e.index), "expected": e.expected, "got": e.got} for e in self.worst],
            "scale": self.scale,
            "hint": self.hint,
            "heatmap": [list(row) for row in self.heatmap],
            "localized": self.localized,
        }


def sample_indices(numel: int, limit: int, seed: int) -> torch.Tensor:
    """All flat indices when few enough, else a seeded random subset (sorted)."""
    if numel <= limit:
        return torch.arange(numel)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(numel, generator=gen)[:limit].sort().values


@torch.no_grad()
def numerical_gradient(
    scalar_fn: ScalarFn,
    inputs: Sequence[torch.Tensor],
    position: int,
    indices: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Central differences of `scalar_fn` w.r.t. the chosen flat elements of one input."""
    base = [t.detach().clone() for t in inputs]
    flat = base[position].view(-1)
    out = torch.empty(len(indices), dtype=torch.float64)
    for k, index in enumerate(indices.tolist()):
        original = flat[index].item()
        flat[index] = original + eps
        plus = float(scalar_fn(base))
        flat[index] = original - eps
        minus = float(scalar_fn(base))
        flat[index] = original
        out[k] = (plus - minus) / (2 * eps)
    return out


def compare(
    argument: str,
    expected: torch.Tensor,
    got: torch.Tensor,
    indices: torch.Tensor,
    shape: Sequence[int],
    *,
    atol: float,
    rtol: float,
    dims: Mapping[str, int] | None = None,
    dim_names: Sequence[str | int] | None = None,
) -> GradMismatch | None:
    """Compare gradients at flat `indices` of a tensor of `shape`; None when all are within
    atol + rtol·|expected| (gradcheck's criterion). `dim_names` (the spec's shape, e.g. ("N", "C"))
    names the dims in hints."""
    expected = expected.detach().double().cpu().reshape(-1)
    got = got.detach().double().cpu().reshape(-1)
    diff = (got - expected).abs()
    bad = diff > atol + rtol * expected.abs()
    bad |= ~torch.isfinite(got)
    if not bool(bad.any()):
        return None
    order = torch.argsort(torch.nan_to_num(diff, nan=math.inf), descending=True)[:3]
    worst = tuple(
        ElementError(
            index=_unravel(int(indices[k]), shape),
            expected=float(expected[k]),
            got=float(got[k]),
        )
        for k in order.tolist()
    )
    norm = float(expected.norm())
    rel = float((got - expected).norm()) / norm if norm > 0 else math.inf
    scale = fitted_scale(expected, got)
    numel = math.prod(shape)
    complete = len(indices) == numel
    hint = hint_for(expected, got, scale, dims or {})
    if hint is None and complete:
        hint = layout_hint(expected, got, shape, atol=atol, rtol=rtol)
    if hint is None:
        hint = slice_hint(bad, indices, shape, dim_names)
    return GradMismatch(
        argument=argument,
        max_abs=float(torch.nan_to_num(diff, nan=math.inf).max()),
        rel_err=rel,
        bad=int(bad.sum()),
        checked=len(indices),
        total=numel,
        worst=worst,
        scale=scale,
        hint=hint,
        heatmap=heatmap(diff, shape) if complete else (),
    )


def layout_hint(
    expected: torch.Tensor, got: torch.Tensor, shape: Sequence[int], *, atol: float, rtol: float
) -> str | None:
    """'transposed' when got is the expected gradient with its dims permuted (then reshaped)."""
    if len(shape) < 2 or len(shape) > 4:
        return None
    grid = expected.reshape(tuple(shape))
    for perm in itertools.permutations(range(len(shape))):
        if perm == tuple(range(len(shape))):
            continue
        candidate = grid.permute(perm).reshape(-1)
        if bool(((got - candidate).abs() <= atol + rtol * candidate.abs()).all()):
            what = "transposed" if len(shape) == 2 else f"transposed (dims permuted as {perm})"
            return (
                f"gradient has the right values in the {what} layout — a .view()/.reshape() where "
                ".t() or .permute() was needed?"
            )
    return None


def slice_hint(
    bad: torch.Tensor, indices: torch.Tensor, shape: Sequence[int], dim_names: Sequence[str | int] | None
) -> str | None:
    """'wrong only at N ∈ {0, 3}' when the wrong elements fill only some slices along one dim."""
    if len(shape) == 0:
        return None
    coords = [_unravel(int(indices[k]), shape) for k in bad.nonzero().reshape(-1).tolist()]
    checked = [_unravel(int(i), shape) for i in indices.tolist()]
    best = None
    for d, size in enumerate(shape):
        if size < 2:
            continue
        wrong = sorted({c[d] for c in coords})
        seen = {c[d] for c in checked}
        if len(wrong) < len(seen) and (best is None or len(wrong) / size < best[2]):
            best = (d, wrong, len(wrong) / size)
    if best is None or best[2] > 0.5:
        return None
    d, wrong, _ = best
    name = dim_names[d] if dim_names and d < len(dim_names) and isinstance(dim_names[d], str) else None
    label = f"{name} (dim {d})" if name else f"dim {d}"
    listed = ", ".join(map(str, wrong[:8])) + (", …" if len(wrong) > 8 else "")
    return (
        f"wrong only at index {listed} of {label}, right elsewhere — an off-by-one, a boundary, or a "
        "special case for that slice?"
    )


def heatmap(diff: torch.Tensor, shape: Sequence[int], rows: int = 16, cols: int = 48) -> tuple[tuple[float, ...], ...]:
    """|expected − got| as a 2-D grid (first dim × the rest), max-pooled to at most rows × cols."""
    grid = torch.nan_to_num(diff, nan=math.inf, posinf=math.inf).reshape((shape[0], -1) if len(shape) >= 2 else (1, -1))
    grid = torch.where(torch.isinf(grid), torch.full_like(grid, float(torch.finfo(grid.dtype).max)), grid)
    r, c = grid.shape
    row_edges = torch.linspace(0, r, min(r, rows) + 1).round().long().tolist()
    col_edges = torch.linspace(0, c, min(c, cols) + 1).round().long().tolist()
    return tuple(
        tuple(
            float(grid[row_edges[i] : row_edges[i + 1], col_edges[j] : col_edges[j + 1]].max())
            for j in range(len(col_edges) - 1)
        )
        for i in range(len(row_edges) - 1)
    )


KINK_HINT = (
    "the inputs sit at a kink (a tie, or max/abs/relu at 0): the numerical derivative is unreliable "
    "there, so the backward may be right — move the inputs away from it (spread values apart, or an "
    "`init` such as uniform with low > 0)"
)


def is_kink(scalar_fn: ScalarFn, inputs: Sequence[torch.Tensor], position: int, flat_index: int, eps: float) -> bool:
    """Whether one-sided differences disagree at an element: the function is not smooth there."""
    base = [t.detach().clone() for t in inputs]
    flat = base[position].view(-1)
    original = flat[flat_index].item()
    with torch.no_grad():
        center = float(scalar_fn(base))
        flat[flat_index] = original + eps
        right = (float(scalar_fn(base)) - center) / eps
        flat[flat_index] = original - eps
        left = (center - float(scalar_fn(base))) / eps
    flat[flat_index] = original
    scale = max(abs(left), abs(right), 1e-12)
    return abs(right - left) > 1e-2 * scale


def fitted_scale(expected: torch.Tensor, got: torch.Tensor) -> float | None:
    """c with got ≈ c·expected, when that fits to within 1% of ‖got‖; else None."""
    denom = float(expected.dot(expected))
    if denom == 0 or expected.numel() < 2 or not bool(torch.isfinite(got).all()):
        return None  # one element fits any factor: that says nothing
    c = float(expected.dot(got)) / denom
    residual = float((got - c * expected).norm())
    if residual > 1e-2 * max(float(got.norm()), 1e-300):
        return None
    return c


def hint_for(expected: torch.Tensor, got: torch.Tensor, scale: float | None, dims: Mapping[str, int]) -> str | None:
    """A likely cause for a recognisable error shape."""
    if not bool(torch.isfinite(got).all()):
        return "backward produces NaN or inf"
    if float(got.abs().max()) == 0.0:
        return "backward returns zeros — a detach, or the wrong branch?"
    if scale is None:
        return None
    return factor_hint(scale, dims)


def factor_hint(scale: float, dims: Mapping[str, int]) -> str | None:
    """The hint for got = scale·expected: a flipped sign or a missing/extra factor."""
    if abs(scale + 1) < 1e-3:
        return "sign is flipped"
    if scale < 0:
        return f"sign is flipped and the gradient is {abs(scale):.3f}× off"
    if abs(scale - 1) < 1e-3:
        return None
    return scale_hint(scale, dims)


def named_quantities(names: Sequence[str], values: Sequence[object], dims: Mapping[str, int]) -> dict[str, int]:
    """What a wrong constant factor may equal: the dims, and per tensor argument its element
    count (`numel(x)`) and, for a mask or targets, how many entries count: nonzero ones in a
    0/1 tensor (`count(mask)`), non-negative ones in integer targets with an ignore value
    (`count(target)`)."""
    quantities = dict(dims)
    for name, value in zip(names, values, strict=False):
        if not isinstance(value, torch.Tensor) or value.numel() < 2:
            continue
        quantities.setdefault(f"numel({name})", value.numel())
        flat = value.detach().reshape(-1)
        if value.dtype == torch.bool or bool(((flat == 0) | (flat == 1)).all()):
            count = int((flat != 0).sum())
        elif not value.is_floating_point():
            count = int((flat >= 0).sum())
        else:
            continue
        if 1 < count < value.numel():
            quantities[f"count({name})"] = count
    return quantities


def scale_hint(scale: float, dims: Mapping[str, int]) -> str:
    """Name a constant factor, and the named quantity it equals (a dim, a product or ratio of
    dims, 2) when one does; else just the number, since a guess would mislead."""
    factor = scale if scale > 1 else 1 / scale
    match = _matching_dims(factor, dims)
    if match is None and math.isclose(factor, 2.0, rel_tol=1e-3):
        match = "2"
    if scale > 1:
        text = f"gradient is {scale:.3f}× too large"
        return f"{text} — missing 1/{match}?" if match else text
    text = f"gradient is {factor:.3f}× too small"
    return f"{text} — divided by {match} once too often?" if match else text


def _matching_dims(factor: float, dims: Mapping[str, int]) -> str | None:
    """`N`, `(N·C)`, `count(mask)` or `N/C` when that dim, product of dims, counted quantity or
    ratio of two equals `factor` (dims first: they are what a user writes 1/N for)."""
    names = [n for n, size in dims.items() if size > 1 and "(" not in n]
    counted = [n for n, size in dims.items() if size > 1 and "(" in n]
    for count in range(1, len(names) + 1):
        for combo in itertools.combinations(names, count):
            product = math.prod(dims[n] for n in combo)
            if math.isclose(factor, product, rel_tol=1e-3):
                label = "·".join(combo)
                label = label if count == 1 else f"({label})"
                return f"{label} ({'·'.join(combo)}={product})"
    for name in counted:
        if math.isclose(factor, dims[name], rel_tol=1e-3):
            return f"{name} (={dims[name]})"
    for a, b in itertools.permutations(names + counted, 2):
        if math.isclose(factor, dims[a] / dims[b], rel_tol=1e-3):
            return f"({a}/{b}) (={dims[a]}/{dims[b]})"
    return None


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size if size else 0)
        flat //= size if size else 1
    return tuple(reversed(index))

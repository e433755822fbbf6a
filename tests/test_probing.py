"""lossctl.probing and the gradient_blocks check: blocks, bisection, boundary coordinates, the
Taylor test and the planner, on the scale examples (lossctl/examples/scale.py) at small but
structured sizes (chunks of 64 rows, tiles of 64 columns), plus the truth of the stated power."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from lossctl.probing import (
    Block,
    Prober,
    Region,
    block_edges,
    boundary_coordinates,
    chi2_quantile,
    localize,
    merge_failures,
    partition,
    plan_probes,
    taylor_test,
)
from lossctl.report import Status

MSE = "dims: {N: 300, C: 10}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}}"
CHUNKED = (
    "dims: {N: 150, V: 20}\nargs: {logits: {shape: [N, V]}, target: {shape: [N], dtype: int64, high: V}, chunk: 64}"
)
TILED = "dims: {N: 150, V: 150}\nargs: {logits: {shape: [N, V]}, target: {shape: [N], dtype: int64, high: V}, tile: 64}"
FLOAT32 = (
    "dims: {N: 32, V: 100}\n"
    "args: {logits: {shape: [N, V], dtype: float32}, target: {shape: [N], dtype: int64, high: V}}"
)


def blocks_result(check_function, function: str, spec: str):
    return check_function(f"lossctl.examples.scale.{function}", spec, checks=("gradient_blocks",))["gradient_blocks"]


# --------------------------------------------------------------------------- the check on the examples


@pytest.mark.parametrize(
    ("function", "spec"),
    [
        ("MeanSquaredError", MSE),
        ("ChunkedCrossEntropy", CHUNKED),
        ("TiledCrossEntropy", TILED),
    ],
)
def test_correct_functions_pass_with_their_coverage_stated(check_function, function, spec):
    result = blocks_result(check_function, function, spec)
    assert result.status is Status.PASSED, result.detail
    assert re.search(
        r"right in \d+ blocks × \d+ directions? and \d+ coordinates incl\. every dim's first", result.detail
    )
    assert "detects ≥" in result.detail and "× one forward+backward" in result.detail
    plan = result.data["plan"]
    assert plan["method"] == "blocks" and plan["evaluations"] > 0 and plan["cost_x_forward_backward"] > 0


@pytest.mark.parametrize(
    ("function", "spec", "where", "hint"),
    [
        ("MSEMissingMean", MSE, "`input`: every row of N=300 is wrong", "missing 1/(N·C)"),
        ("MSELastRowZero", MSE, "`input`: row 299 of N=300 (the last one) is wrong", "returns zeros there"),
        ("MSEFirstColumnSignFlipped", MSE, "`input`: column 0 of C=10 (the first one) is wrong", "sign is flipped"),
        ("MSEIgnoresGradOutput", MSE, "`input`: every row of N=300 is wrong", "ignores grad_output"),
        (
            "ChunkedCrossEntropyLastChunkOwnMean",
            CHUNKED,
            "`logits`: rows 128–149 of N=150 (the last 22 rows) are wrong: the gradient there is 6.818× the numerical",
            "6.818× too large",
        ),
    ],
)
def test_broken_functions_are_caught_and_localized(check_function, function, spec, where, hint):
    result = blocks_result(check_function, function, spec)
    assert result.status is Status.FAILED, result.detail
    assert where in result.detail, result.detail
    assert hint in (result.hint or ""), result.hint


def test_a_wrong_offset_in_later_tiles_is_localized_to_those_tiles(check_function):
    result = blocks_result(check_function, "TiledCrossEntropyWrongOffset", TILED)
    assert result.status is Status.FAILED, result.detail
    match = re.search(r"columns (\d+)–(\d+) of V=150", result.detail)
    assert match, result.detail
    first, last = map(int, match.groups())
    # every target in columns ≥ 64 loses its −1: the first and last such target columns (which
    # depend on the 60 drawn targets) bound the wrong region
    assert 64 <= first <= 80 and 130 <= last <= 149


def test_a_float32_only_function_gets_the_taylor_test(check_function):
    right = blocks_result(check_function, "Float32OnlyCrossEntropy", FLOAT32)
    assert right.status is Status.PASSED, right.detail
    assert right.detail.startswith("cannot run float64 (TypeError): Taylor-remainder test in float32")
    assert "remainder falls ~4× per halving" in right.detail
    wrong = blocks_result(check_function, "Float32OnlyCrossEntropyIgnoresGradOutput", FLOAT32)
    assert wrong.status is Status.FAILED, wrong.detail
    rate = float(re.search(r"the remainder falls ([\d.]+)× per halving", wrong.detail).group(1))
    assert 1.6 <= rate <= 2.5, wrong.detail


# --------------------------------------------------------------------------- blocks and coordinates


def test_block_edges_cut_at_ends_powers_of_two_and_last_tiles():
    edges = block_edges(5000)
    assert {0, 1, 4999, 5000} <= set(edges)
    assert {2**k for k in range(1, 13)} <= set(edges)
    assert 4992 in edges  # the last tile of 64 (and 128) starts there
    assert len(edges) < 40  # O(log n)
    assert block_edges(1) == [0, 1]
    assert len(block_edges(10**7)) < 40


def test_partition_covers_every_index_of_every_dim_once():
    shapes = [(300, 10), (7,)]
    blocks = partition(shapes)
    for position, shape in enumerate(shapes):
        for dim, size in enumerate(shape):
            along = sorted((b.start, b.stop) for b in blocks if (b.input, b.dim) == (position, dim))
            assert along[0][0] == 0 and along[-1][1] == size
            assert all(a[1] == b[0] for a, b in itertools.pairwise(along))


def test_boundary_coordinates_include_each_dims_first_and_last_index():
    shape = (1000, 37, 5)
    coords = boundary_coordinates(shape, 20, seed=3)
    assert len(coords) == 20 and len(set(coords)) == 20
    for dim, size in enumerate(shape):
        seen = {c[dim] for c in coords}
        assert 0 in seen and size - 1 in seen
    assert len(boundary_coordinates((4, 3), 100, seed=0)) == 12  # small: every coordinate


# --------------------------------------------------------------------------- probes on plain callables


def quadratic(n: int, m: int, seed: int = 0):
    """S(x) = Σ w·x² + b·x in float64, and its exact gradient."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(n, m, generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(n, m, generator=gen, dtype=torch.float64)
    x = torch.randn(n, m, generator=gen, dtype=torch.float64)

    def scalar(xs):
        return float((w * xs[0].square() + b * xs[0]).sum())

    return scalar, x, 2 * w * x + b


def test_bisection_finds_the_wrong_rows_in_log_many_probes():
    scalar, x, grad = quadratic(5000, 3)
    wrong = grad.clone()
    wrong[4096:] *= 1.25
    prober = Prober(scalar, [x], [wrong], eps=1e-6, tolerance=1e-3, seed=1, directions=2)
    failed = [p for p in (prober.probe(b) for b in partition([(5000, 3)])) if p.failed]
    runs = [(a, b) for a, b in merge_failures(failed) if a.dim == 0]
    assert len(runs) == 1
    before = prober.evaluations
    region = localize(prober, *runs[0])
    assert (region.start, region.stop) == (4096, 5000)
    assert region.factor == pytest.approx(1.25, rel=1e-3)
    assert prober.evaluations - before <= 2 * 2 * (2 * math.ceil(math.log2(5000)) + 3) * 2
    assert region.describe((5000, 3), "N") == "rows 4096–4999 of N=5000 (the last 904 rows)"


def test_a_region_in_the_middle_is_described_by_its_indices():
    region = Region(0, 1, 2048, 4096, 5000, 1.0, None)
    assert region.describe((8, 5000), "V") == "columns 2048–4095 of V=5000"
    assert Region(0, 0, 0, 1, 9, 1.0, None).describe((9,), None) == "element 0 of dim 0 (size 9) (the first one)"


def test_a_correct_gradient_raises_no_alarm_in_any_block_or_coordinate():
    scalar, x, grad = quadratic(600, 20, seed=4)
    prober = Prober(scalar, [x], [grad], eps=1e-6, tolerance=1e-3, seed=2, directions=4)
    probes = [prober.probe(b) for b in partition([(600, 20)])]
    coords = [prober.coordinate(0, idx) for idx in boundary_coordinates((600, 20), 64, seed=0)]
    assert not [p.block for p in probes if p.suspicious]
    assert not [c.index for c in coords if c.suspicious]


@pytest.mark.parametrize("directions", [1, 2, 4])
def test_the_stated_detection_power_is_true(directions):
    """An error of the stated size in one block, in a random direction, is missed at most 1 % of
    the time: over 400 independent draws (each its own error and directions) the misses stay within
    what a 1 % rate gives (4 expected; 9 or more has probability ≈ 2 %)."""
    scalar, x, grad = quadratic(64, 8, seed=5)
    block = Block(0, 0, 32, 48)
    g_block = grad[32:48]
    missed = 0
    for trial in range(400):
        gen = torch.Generator().manual_seed(1000 + trial)
        error = torch.randn(g_block.shape, generator=gen, dtype=torch.float64)
        prober = Prober(scalar, [x], [grad], eps=1e-6, tolerance=1e-3, seed=trial, directions=directions)
        size = prober.detectable() * float(g_block.norm())
        wrong = grad.clone()
        wrong[32:48] += error / error.norm() * size
        prober.grads = [wrong]
        missed += not prober.probe(block).failed
    assert missed <= 8


def test_chi2_quantiles_match_tables():
    assert chi2_quantile(0.01, 1) == pytest.approx(1.571e-4, rel=1e-3)
    assert chi2_quantile(0.01, 2) == pytest.approx(0.02010, rel=1e-3)
    assert chi2_quantile(0.01, 8) == pytest.approx(1.646, rel=1e-3)


# --------------------------------------------------------------------------- the Taylor test


def softmax_ce(n: int, v: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, v, generator=gen).to(dtype)
    target = torch.randint(0, v, (n,), generator=gen)

    def scalar(xs):
        return 0.7 * float(torch.nn.functional.cross_entropy(xs[0], target))

    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(0.7 * torch.nn.functional.cross_entropy(leaf, target), leaf)
    return scalar, x, grad


@pytest.mark.parametrize("seed", range(3))
def test_taylor_passes_a_right_float32_gradient_without_a_tolerance(seed):
    scalar, x, grad = softmax_ce(64, 300, torch.float32, seed)
    result, calls = taylor_test(scalar, [x], [grad], seed=seed)
    assert result.verdict == "right", (result.rate, result.remainders)
    assert calls == 1 + 2 * len(result.steps)
    edge, _ = taylor_test(scalar, [x], [grad], seed=seed, block=Block(0, 1, 299, 300))
    assert edge.verdict == "right", (edge.rate, edge.remainders)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.5])
def test_taylor_fails_a_wrong_float32_gradient(factor):
    scalar, x, grad = softmax_ce(64, 300, torch.float32)
    wrong = grad.clone()
    wrong[:, 150:] *= factor
    results = [taylor_test(scalar, [x], [wrong], seed=s)[0] for s in range(2)]
    assert any(r.verdict == "wrong" for r in results), [r.rate for r in results]


# --------------------------------------------------------------------------- the planner


def test_planner_differences_every_coordinate_when_tiny_and_fits_the_budget_when_large():
    tiny = plan_probes([(5, 3)], forward_seconds=1e-4, step_seconds=3e-4, budget_seconds=30)
    assert tiny.every_coordinate and tiny.coordinates == 15 and tiny.directions == 4
    huge = plan_probes([(10**6, 10)], forward_seconds=0.3, step_seconds=0.8, budget_seconds=30)
    assert not huge.every_coordinate and huge.directions == 1
    assert huge.evaluations < 100  # O(log numel), not O(numel)
    assert huge.cost == pytest.approx(huge.evaluations * 0.3 / 0.8)
    medium = plan_probes([(10**6, 10)], forward_seconds=0.01, step_seconds=0.03, budget_seconds=30)
    assert medium.directions == 4 and medium.evaluations + medium.localize_reserve <= 30 / 0.01


def test_planner_coarsens_the_blocks_before_it_runs_past_the_budget():
    plan = plan_probes([(10**6, 10)], forward_seconds=0.6, step_seconds=1.5, budget_seconds=25)
    assert plan.stride > 1 and plan.evaluations <= 25 / 0.6
    assert plan.blocks == len(partition([(10**6, 10)], plan.stride)) < len(partition([(10**6, 10)]))
    assert {0, 1, 999424, 999936, 999999, 10**6} <= set(block_edges(10**6, plan.stride))


def test_planner_picks_the_taylor_test_when_float64_is_out():
    plan = plan_probes([(4096, 2048)], forward_seconds=0.05, step_seconds=0.15, budget_seconds=30, float64=False)
    assert plan.method == "taylor" and plan.directions == 4 and plan.taylor_blocks == 4
    assert plan.to_dict()["cost_x_forward_backward"] == pytest.approx(plan.evaluations / 3)

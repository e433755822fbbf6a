"""Every check lossctl knows, in one torch-free table: id, run order, default, description, options.

Spec validation, the project config, `lossctl checks`, the check registry and the README's list all
read this table. Adding a check = one module in lossctl/checks/ (named as its id, holding `run`) and
one line here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from lossctl.budget import CostModel, Sizes, cost_model


class OptionKind(Enum):
    """What a check option's value is, so spec validation knows how to read it."""

    NUMBER = "a positive number"
    DIMS = "a list of dim names"
    ARGS = "a list of argument names"


@dataclass(frozen=True)
class Option:
    name: str
    kind: OptionKind
    help: str


@dataclass(frozen=True)
class CheckInfo:
    id: str
    """Stable id, also the module name under lossctl/checks/."""
    description: str
    """One line: what the check catches."""
    default: bool = True
    """Whether it runs when no --checks are given (False: opt-in)."""
    options: tuple[Option, ...] = ()
    """Options taken under `checks: {id: {...}}` in a spec; without any, only true/false."""
    verifies_gradient: bool = False
    """It compares gradient values with an independent truth (finite differences, float64)."""
    cost: float | None = None
    """Roughly what its full method costs, in forward+backward passes of the case (its time over one
    measured pass, rounded up, for the mean-MSE at [10⁶, 10]; see README "At scale"). The case's
    budget plan (lossctl.budget) allots each priced check its share before the first one runs.
    None: always cheap, unpriced."""
    min_cost: float | None = None
    """What its smallest method costs (fewer directions, dtypes, probes; fast mode), in the same
    passes: the plan shrinks it toward this before skipping anything. None: a fixed method."""
    grows: float = 0.0
    """The share of the plan's slack (what the full methods leave unused) it takes to cover more:
    gradient_blocks more blocks and directions, edge_sizes gradcheck's slow mode at each size."""
    at_scale: bool = False
    """An opt-in check that also runs by default on a large case: one whose full Jacobian (a forward
    per input element) would not fit the case's budget."""

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


# Option names, used by the checks that read them (never string literals in a check).
EXCLUDE_DIMS = "exclude_dims"
EXCLUDE_ARGS = "exclude_args"
FACTOR = "factor"
FLOOR = "floor"

CATALOGUE: tuple[CheckInfo, ...] = (
    CheckInfo("forward", "forward runs, returns tensors, and its outputs are finite"),
    CheckInfo("backward", "a random grad_output gives every input a finite gradient of its shape and dtype"),
    CheckInfo(
        "raw_backward",
        "backward itself returns one gradient per argument, None for non-tensors, matching dtype/shape/device",
    ),
    CheckInfo(
        "undefined_grad",
        "a zero grad_output gives finite gradients; with several outputs, an unused (undefined) one counts as zero",
    ),
    CheckInfo(
        "nondiff_outputs",
        "non-differentiable outputs (counts, indices) are marked so, and backward takes a grad for each output",
    ),
    CheckInfo(
        "gradcheck",
        "torch.autograd.gradcheck on float64 copies, with the worst elements named on failure",
        verifies_gradient=True,
        cost=12,
        min_cost=12,
    ),
    CheckInfo(
        "gradient_scaled",
        "analytical vs numerical gradient relative to the gradient's own scale (mean losses at large N)",
        verifies_gradient=True,
        cost=48,
        min_cost=14,
    ),
    CheckInfo(
        "gradient_blocks",
        "the gradient per row/chunk/tile block and at boundary coordinates, within a time budget",
        default=False,
        verifies_gradient=True,
        cost=90,
        min_cost=20,
        grows=0.5,
        at_scale=True,
    ),
    CheckInfo("linearity", "backward is linear in grad_output (scaled and summed upstream gradients)", cost=16),
    CheckInfo(
        "needs_input_grad",
        "each argument alone requiring grad gets the same gradient (needs_input_grad slot mix-ups)",
        cost=6,
    ),
    CheckInfo(
        "aliased_args",
        "the same tensor passed for two same-shaped arguments: same outputs, gradient = the two gradients' sum",
        cost=6,
    ),
    CheckInfo(
        "determinism",
        "two backward passes on identical inputs agree (catches randomness recomputed in backward)",
        cost=4,
    ),
    CheckInfo("grad_output_intact", "backward does not modify grad_output in place"),
    CheckInfo("inplace", "no input or saved tensor is modified in place; names the tensor and the line when one is"),
    CheckInfo(
        "mutation",
        "no raw-pointer write (Triton store, .data) changes a saved tensor, or an input during backward",
    ),
    CheckInfo("noncontiguous", "non-contiguous inputs and grad_output give the same outputs and gradients", cost=5),
    CheckInfo(
        "edge_sizes",
        "each named dim set to 1 in turn still runs and passes gradcheck (.squeeze() and dim mix-ups)",
        options=(Option(EXCLUDE_DIMS, OptionKind.DIMS, "dims never shrunk to 1"),),
        verifies_gradient=True,
        cost=12,
        grows=0.25,
    ),
    CheckInfo(
        "double_backward",
        "gradgradcheck: double backward is right, or refuses loudly (@once_differentiable)",
        verifies_gradient=True,
        cost=12,
        min_cost=1,  # the case shrunk to a toy size alone, where the full case's fast mode does not fit
    ),
    CheckInfo("forward_ad", "a Function's jvp matches finite differences (skipped when it defines none)", cost=6),
    CheckInfo(
        "vmap", "a Function supporting torch.func.vmap gives the per-sample loop's outputs and gradients", cost=6
    ),
    CheckInfo(
        "low_precision",
        "forward/backward in float32, float16 and bfloat16 agree with float64 within a dtype-scaled error",
        options=(Option(FACTOR, OptionKind.NUMBER, "allowed multiple of the rounding/conditioning floor"),),
        verifies_gradient=True,
        cost=32,
        min_cost=11,
    ),
    CheckInfo(
        "autocast",
        "under torch.autocast (CPU bfloat16; CUDA float16) forward/backward run and agree with float32",
        cost=12,
    ),
    CheckInfo(
        "reference",
        "outputs and gradients match the spec's plain `reference:` within 2× its own low-precision error",
        options=(
            Option(FACTOR, OptionKind.NUMBER, "allowed multiple of the reference's own error"),
            Option(FLOOR, OptionKind.NUMBER, "units of roundoff always allowed"),
        ),
        verifies_gradient=True,
        cost=8,
    ),
    CheckInfo(
        "device_parity",
        "on a GPU: outputs and gradients equal the CPU float64 result within the dtype's tolerance",
    ),
    CheckInfo(
        "stability",
        "inputs scaled to large and small magnitude still give finite outputs and gradients",
        options=(Option(EXCLUDE_ARGS, OptionKind.ARGS, "arguments never scaled"),),
        cost=6,
    ),
    CheckInfo(
        "compile",
        "forward and backward under torch.compile (aot_eager) equal eager; reports graph breaks (opt-in)",
        default=False,
        cost=10,
    ),
    CheckInfo(
        "compile_agreement",
        "eager, torch.compile (aot_eager) and torch.func.vjp give the same outputs and gradients (opt-in)",
        default=False,
        cost=10,
    ),
)

CHECK_IDS: tuple[str, ...] = tuple(c.id for c in CATALOGUE)
"""Every check id, in run order."""

CHECK_OPTIONS: dict[str, tuple[str, ...]] = {c.id: tuple(o.name for o in c.options) for c in CATALOGUE if c.options}
"""Options a check takes under `checks: {id: {...}}`; other checks take only true/false."""

BY_ID: dict[str, CheckInfo] = {c.id: c for c in CATALOGUE}


def info(check_id: str) -> CheckInfo:
    return BY_ID[check_id]


def option_kind(check_id: str, name: str) -> OptionKind:
    return BY_ID[check_id].option(name).kind


def cost_models(check_ids: Sequence[str], sizes: Sizes) -> list[tuple[str, CostModel, bool]]:
    """(id, cost model, verifies gradient values) of each priced check among `check_ids`, in order:
    what lossctl.budget.plan_budget allots the case's budget by."""
    models = []
    for check_id in check_ids:
        if (c := BY_ID.get(check_id)) is not None:
            model = cost_model(c.id, c.cost, c.min_cost, c.grows, sizes)
            if model is not None:
                models.append((c.id, model, c.verifies_gradient))
    return models


def default_label(check: CheckInfo) -> str:
    """`on`, `opt-in`, or `at scale` (opt-in, and on by default for a large case)."""
    return "on" if check.default else "at scale" if check.at_scale else "opt-in"


def markdown_list() -> str:
    """The README's list of checks, generated from this table."""
    lines = ["| id | default | what it checks |", "|---|---|---|"]
    for c in CATALOGUE:
        lines.append(f"| `{c.id}` | {default_label(c)} | {c.description} |")
    return "\n".join(lines)

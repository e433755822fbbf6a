"""The check context: one spec at one point of its sweep, its built inputs, and the one door through
which checks run user code (forward, vjp, gradcheck, dtype variants), with probes cached per case."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lossctl import activity
from lossctl.budget import (
    RESERVE_SHARE,
    SLOW_MODE_MAX_INPUTS,
    SLOW_MODE_MAX_OUTPUTS,
    Allotment,
    BudgetPlan,
    Sizes,
    plan_budget,
    slow_mode_passes,
)
from lossctl.device import clock, seed_device
from lossctl.inputs import build_inputs, derive_seed
from lossctl.settings import DEFAULT_BUDGET_S
from lossctl.spec import CasePoint, Spec
from lossctl.target import Target

MEASURE_SHRUNK_ABOVE_S = 0.05
"""A case whose forward+backward takes at least this long has its edge_sizes cases timed for the
plan (below, the plan fits whatever their price, and toy sizes run no extra pass)."""


class Float64Unsupported(Exception):
    """The Function cannot run on float64 copies of its inputs (the message says why)."""


@dataclass
class CheckContext:
    """Everything a check needs, and the only way a check runs user code: `call`/`forward`, `vjp`,
    `backward`, `gradcheck`/`gradgradcheck` and `in_dtype` apply the case's keyword arguments,
    seeds and device every time. Probes a check would otherwise repeat (float64 support, forward
    randomness, the float64 outputs, the cost of one forward+backward) are measured once per case.
    Checks call `fresh()` for inputs so no check sees another's in-place changes."""

    id: str
    spec: Spec
    point: CasePoint
    target: Target
    device: torch.device
    seed: int
    names: tuple[str, ...]
    """forward's positional parameters, in order (defaults filled in)."""
    values: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    budget_s: float = DEFAULT_BUDGET_S
    """Seconds the case's checks may take together; `remaining_s()` is what is left of it."""
    started: float = field(default_factory=time.monotonic, repr=False)
    _callables: dict[Any, Callable[..., Any]] = field(default_factory=dict, repr=False)
    _random_forward: bool | None = field(default=None, repr=False)
    _float64_error: str | None = field(default=None, repr=False)
    _float64_outputs: tuple[Any, ...] | None = field(default=None, repr=False)
    _cost_s: float | None = field(default=None, repr=False)
    _output_elements: int = field(default=0, repr=False)
    plan: BudgetPlan | None = field(default=None, repr=False)
    """The budget plan (lossctl.budget), made once before the first costly check; None before."""
    _resized: dict[tuple[tuple[str, int], ...], CheckContext] = field(default_factory=dict, repr=False)
    diagnoses: dict[Any, Any] = field(default_factory=dict, repr=False)
    """A failure's diagnosis at scale, by argument and tolerance: a later check that fails the same
    way reuses it instead of spending its budget again."""

    # ------------------------------------------------------------------ inputs

    @property
    def diff_indices(self) -> tuple[int, ...]:
        """Positions of the floating tensor inputs that require grad."""
        return tuple(
            i
            for i, v in enumerate(self.values)
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.requires_grad
        )

    @property
    def diff_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.diff_indices)

    @property
    def tensor_indices(self) -> tuple[int, ...]:
        return tuple(i for i, v in enumerate(self.values) if isinstance(v, torch.Tensor))

    @property
    def working_dtype(self) -> torch.dtype:
        """The dtype the spec asks for: that of the first differentiable (else floating) input."""
        for i in self.diff_indices:
            return self.values[i].dtype
        for v in self.values:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.dtype
        return torch.float64

    def fresh(self, dtype: torch.dtype | None = None) -> list[Any]:
        """Copies of the inputs (floating tensors cast to `dtype` when given), as new leaves."""
        return [_copy(v, dtype) for v in self.values]

    def promoted(self) -> list[str]:
        """Names of floating inputs that are not float64 (what a float64 run promotes)."""
        return [
            n
            for n, v in zip(self.names, self.values, strict=True)
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != torch.float64
        ]

    # ------------------------------------------------------------------ calling

    def function(self, dtype: torch.dtype | None = None) -> Callable[..., Any]:
        """The target as a function of the positional inputs (a Module built once per dtype)."""
        key = dtype
        if key not in self._callables:
            self._callables[key] = self.target.make_callable(self.spec.module_kwargs, device=self.device, dtype=dtype)
        return self._callables[key]

    def call(
        self,
        values: Sequence[Any],
        dtype: torch.dtype | None = None,
        stream: str = "forward",
        fn: Callable[..., Any] | None = None,
    ) -> tuple[Any, ...]:
        """Run forward (or `fn`, a wrapped forward such as a compiled one) with the case's keyword
        arguments. Every call draws the same random numbers (a forward with dropout or noise gives
        comparable outputs across the calls a check makes), and the caller's random stream is left
        as it was."""
        kwargs = {k: _copy(v, dtype) for k, v in self.kwargs.items()}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed_device(self.device, derive_seed(self.seed, stream))
            return as_outputs(activity.call(fn or self.function(dtype), values, kwargs))

    def forward(self, dtype: torch.dtype | None = None) -> tuple[Any, ...]:
        """Forward on fresh inputs (cast to `dtype` when given)."""
        return self.call(self.fresh(dtype), dtype)

    def in_dtype(self, dtype: torch.dtype) -> list[Any]:
        """The inputs rounded to `dtype` (floating tensors only), as new leaves."""
        return self.fresh(dtype)

    # ------------------------------------------------------------------ cached probes

    def runs_in_float64(self) -> bool:
        """Whether the Function accepts float64 copies of its inputs on this device (probed once)."""
        return self.float64_error() is None

    def float64_error(self) -> str | None:
        """Why the Function cannot run in float64, or None when it can (probed once)."""
        if self._float64_outputs is None and self._float64_error is None:
            if not float64_supported(self.device):
                self._float64_error = f"float64 is not supported on {self.device.type}"
            else:
                try:
                    # without their graph: it holds the float64 copies and what forward saved,
                    # and the checks asking need only the outputs' shapes, dtypes and positions
                    self._float64_outputs = without_graph(self.call(self.fresh(torch.float64), torch.float64))
                except Exception as error:
                    self._float64_error = f"cannot run in float64 ({type(error).__name__}: {error})"
        return self._float64_error

    def float64_outputs(self) -> tuple[Any, ...]:
        """Forward's outputs on float64 copies of the inputs (run once; raises Float64Unsupported)."""
        if (why := self.float64_error()) is not None:
            raise Float64Unsupported(why)
        assert self._float64_outputs is not None
        return self._float64_outputs

    def cost_s(self) -> float:
        """Seconds one forward+backward of this case takes (measured once, on first ask): what a
        check's plan is priced in."""
        if self._cost_s is None:
            self._cost_s = self._timed_pass(None)
        return self._cost_s

    def _timed_pass(self, dtype: torch.dtype | None) -> float:
        """One forward+backward in `dtype` (None: the case's own), in seconds: the faster of two, as
        a first call also pays one-time costs (allocation, lazy init) that would overprice every
        check of the plan. Records the differentiable output elements."""
        best = math.inf
        for _ in range(2):
            start = clock(self.device)
            values = self.fresh(dtype)
            outputs = differentiable_outputs(self.call(values, dtype))
            if outputs and self.diff_indices:
                self.backward(outputs, values, self.random_cotangents(outputs, "cost"))
            best = min(best, clock(self.device) - start)
            self._output_elements = sum(o.numel() for o in outputs)
            del values, outputs
        return best

    def sizes(self) -> Sizes:
        """What the checks' cost models need: input and output elements, and the input elements
        left when each named dim (of size > 1) is 1."""
        self.cost_s()
        diff = [self.values[i] for i in self.diff_indices]
        inputs = sum(t.numel() for t in diff)
        shrunk = tuple(
            sum(t.numel() // size if size in t.shape else t.numel() for t in diff)
            for size in self.point.dims.values()
            if size > 1
        )
        return Sizes(
            inputs=inputs, outputs=self._output_elements, shrunk_inputs=shrunk, shrunk_cost=self._shrunk_cost()
        )

    def _shrunk_cost(self) -> tuple[float, ...]:
        """Each edge_sizes case's forward+backward (its dim at 1) over this case's: measured, since
        a kernel's time can follow its size or not at all. Empty at toy size (the plan fits)."""
        unit = self.cost_s()
        if unit < MEASURE_SHRUNK_ABOVE_S:
            return ()
        ratios = []
        for dim, size in self.point.dims.items():
            if size <= 1:
                continue
            try:
                small = self.with_dims({**self.point.dims, dim: 1})
                ratios.append(min(small.cost_s() / unit, 1.0))
            except Exception:  # refused at size 1: edge_sizes finds that out at once
                ratios.append(0.0)
        return tuple(ratios)

    def make_plan(self, check_ids: Sequence[str]) -> BudgetPlan:
        """Plan the budget for these checks (once: a later call returns the plan made)."""
        if self.plan is None:
            from lossctl.catalogue import cost_models  # the catalogue imports nothing of torch

            models = cost_models([c for c in check_ids if self._may_apply(c)], self.sizes())
            unit = max(self.cost_s(), self._float64_cost_s())
            left = self.remaining_s()
            available = left - RESERVE_SHARE * max(left, 0.0)
            self.plan = plan_budget(models, unit, available, self.budget_s)
        return self.plan

    def _float64_cost_s(self) -> float:
        """One forward+backward on float64 copies (the faster of two), when the case's own dtype is
        not float64: gradcheck, gradient_scaled, gradient_blocks and low_precision's reference run
        in float64, which can be many times slower (a GPU's float64 units, a float32-tuned
        kernel). 0.0 when the case is float64 already or cannot run it (the plan then prices in
        the case's dtype)."""
        floating = [v for v in self.values if isinstance(v, torch.Tensor) and v.is_floating_point()]
        if all(v.dtype == torch.float64 for v in floating) or self.float64_error() is not None:
            return 0.0
        return self._timed_pass(torch.float64)

    def _may_apply(self, check_id: str) -> bool:
        """False for a check that will skip at once here, so the plan gives it nothing."""
        if check_id == "reference":
            return bool(self.spec.reference)
        if check_id in ("needs_input_grad", "aliased_args"):
            return len(self.diff_indices) > 1
        if check_id == "edge_sizes":
            return bool(self.point.dims)
        if check_id in ("forward_ad", "vmap"):
            if not self.target.is_function:
                return False
            # the checks' own tests, imported here: lossctl.checks imports this module
            from lossctl.checks.forward_ad import defines_jvp
            from lossctl.checks.vmap import supports_vmap

            applies = defines_jvp if check_id == "forward_ad" else supports_vmap
            return applies(self.target.obj)
        return True

    def allotment(self, check_id: str) -> Allotment | None:
        """This check's share of the budget plan (None: no plan yet, or the check is unpriced)."""
        return self.plan.get(check_id) if self.plan is not None else None

    def allotted_s(self, check_id: str) -> float:
        """Seconds the plan gives this check (what is left of the budget when it has no plan entry)."""
        allotment = self.allotment(check_id)
        left = max(self.remaining_s(), 0.0)
        # never more than is left: a check before it may have overrun its own share
        return min(allotment.seconds, left) if allotment is not None else left

    def allotted_share(self, check_id: str) -> float:
        """Where the plan puts this check between its smallest method (0) and its full one (1)."""
        allotment = self.allotment(check_id)
        return allotment.share if allotment is not None else 1.0

    def plan_reduced(self, check_id: str) -> bool:
        """Whether the plan gives this check less than its full method."""
        return self.allotted_share(check_id) < 1.0

    def measured_cost_s(self) -> float | None:
        """`cost_s()` if a check has measured it, else None (nothing is run)."""
        return self._cost_s

    def remaining_s(self) -> float:
        """Seconds left of the case's budget."""
        return self.budget_s - (time.monotonic() - self.started)

    def forward_is_random(self) -> bool:
        """Whether forward draws random numbers (dropout, noise): two calls with different random
        streams give different outputs. Measured once per case: three checks ask."""
        if self._random_forward is None:
            first = without_graph(self.forward())  # its values only: its graph holds a copy of the inputs
            second = self.call(self.fresh(), stream="forward-other")
            self._random_forward = any(
                isinstance(a, torch.Tensor) and not torch.equal(a.detach(), b.detach())
                for a, b in zip(first, second, strict=True)
            )
        return self._random_forward

    def substitute(self, values: Sequence[Any], diff: Sequence[torch.Tensor]) -> list[Any]:
        """`values` with the differentiable positions replaced by `diff`, in order."""
        out = list(values)
        for i, tensor in zip(self.diff_indices, diff, strict=True):
            out[i] = tensor
        return out

    @classmethod
    def build(
        cls, case_id: str, spec: Spec, point: CasePoint, target: Target, device: torch.device, seed: int
    ) -> CheckContext:
        """Draw the inputs for one point of a spec and bind them to the target's signature."""
        values = build_inputs(spec, point.dims, seed=seed, device=device)
        positional, keyword = target.bind(values)
        return cls(
            id=case_id,
            spec=spec,
            point=point,
            target=target,
            device=device,
            seed=seed,
            names=tuple(name for name, _ in positional),
            values=tuple(value for _, value in positional),
            kwargs=keyword,
        )

    def with_dims(self, dims: Mapping[str, int]) -> CheckContext:
        """The same case with other sizes (inputs rebuilt from the same seed), sharing the budget.
        Built once per size: the plan times edge_sizes' cases, and the check then uses the same ones
        (their measured cost with them)."""
        key = tuple(sorted(dims.items()))
        other = self._resized.get(key)
        if other is None:
            label = ",".join(f"{k}={v}" for k, v in dims.items())
            point = CasePoint(dims=dict(dims), swept=tuple(dims))
            name = f"{self.spec.name}[{label}]"
            other = type(self).build(name, self.spec, point, self.target, self.device, self.seed)
            self._resized[key] = other
        other.budget_s, other.started, other.plan = self.budget_s, self.started, self.plan
        return other

    def output_positions(self, outputs: Sequence[Any]) -> list[int]:
        """Positions of the differentiable outputs (to pick the same ones under no_grad)."""
        return [i for i, o in enumerate(outputs) if is_differentiable(o)]

    def random_cotangents(self, outputs: Sequence[torch.Tensor], label: str) -> list[torch.Tensor]:
        """Seeded standard-normal grad_outputs shaped like `outputs`; `label` picks the stream."""
        return [random_like(o, derive_seed(self.seed, "cotangent", label, i)) for i, o in enumerate(outputs)]

    def vjp(
        self,
        values: Sequence[Any],
        cotangents: Sequence[torch.Tensor] | Callable[[list[torch.Tensor]], Sequence[torch.Tensor]] | str,
        dtype: torch.dtype | None = None,
        *,
        fn: Callable[..., Any] | None = None,
        create_graph: bool = False,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Run forward on `values`, then backward with `cotangents` (a list, a function building
        them from the differentiable outputs, or a label naming the seeded random stream to draw
        them from). Returns those outputs and one gradient per differentiable input (None where
        backward gave none)."""
        outputs = differentiable_outputs(self.call(values, dtype, fn=fn))
        if not outputs:
            raise NoDifferentiableOutput()
        if isinstance(cotangents, str):
            grads_out = self.random_cotangents(outputs, cotangents)
        else:
            grads_out = cotangents(outputs) if callable(cotangents) else list(cotangents)
        return outputs, self.backward(outputs, values, grads_out, create_graph=create_graph)

    def backward(
        self,
        outputs: Sequence[Any],
        values: Sequence[Any],
        cotangents: Sequence[torch.Tensor],
        *,
        inputs: Sequence[torch.Tensor] | None = None,
        create_graph: bool = False,
    ) -> list[torch.Tensor | None]:
        """Gradients of the differentiable `outputs` (forward's, all or some) with `cotangents`,
        w.r.t. `inputs` (default: the differentiable positions of `values`); None where unused."""
        diff = differentiable_outputs(outputs)
        if not diff:
            raise NoDifferentiableOutput()
        wrt = list(inputs) if inputs is not None else [values[i] for i in self.diff_indices]
        grads = torch.autograd.grad(diff, wrt, list(cotangents), allow_unused=True, create_graph=create_graph)
        return list(grads)

    # ------------------------------------------------------------------ gradcheck

    def float64_function(self, values: list[Any]) -> tuple[Callable[..., tuple[Any, ...]], tuple[torch.Tensor, ...]]:
        """The Function as a function of its differentiable inputs only (the others fixed), run in
        float64: what gradcheck and gradgradcheck take, with those inputs."""

        def fn(*diff: torch.Tensor) -> tuple[Any, ...]:
            return self.call(self.substitute(values, diff), torch.float64)

        return fn, tuple(values[i] for i in self.diff_indices)

    def use_fast_mode(self, max_inputs: int = SLOW_MODE_MAX_INPUTS, check_id: str | None = None) -> bool:
        """Slow mode (the full Jacobian) for small cases, fast mode (random projections) above, and
        wherever the budget plan gives `check_id` less than its full Jacobian costs."""
        inputs = sum(self.values[i].numel() for i in self.diff_indices)
        outputs = sum(o.numel() for o in differentiable_outputs(self.float64_outputs()))
        reduced = check_id is not None and self.plan_reduced(check_id)
        return inputs > max_inputs or outputs > SLOW_MODE_MAX_OUTPUTS or reduced

    def gradcheck(self, values: list[Any], *, fast: bool, **settings: Any) -> None:
        """torch.autograd.gradcheck on float64 `values` (raises GradcheckError on a mismatch).
        In fast mode a mismatch makes torch rebuild the full Jacobian for its message (one forward
        per input element): where that would not fit the budget it is left out, and the check's
        own diagnosis (checks.common.diagnose_gradients) explains the failure instead."""
        fn, inputs = self.float64_function(values)
        tol = self.spec.tolerance
        settings = {"eps": tol.eps, "atol": tol.atol, "rtol": tol.rtol, **settings}
        with _without_slow_mode_message(fast and self.slow_jacobian_over_budget()):
            torch.autograd.gradcheck(fn, inputs, fast_mode=fast, **settings)

    def full_jacobian_over_budget(self) -> bool:
        """Whether one forward per input element (a full numerical Jacobian) would take more than
        what is left of the case's budget."""
        elements = sum(self.values[i].numel() for i in self.diff_indices)
        return elements > SLOW_MODE_MAX_INPUTS and elements * self.cost_s() > max(self.remaining_s(), 0.0)

    def slow_jacobian_s(self) -> float:
        """Seconds gradcheck's full Jacobian (slow mode) would take here, at the measured cost."""
        cost = self.cost_s()
        inputs = sum(self.values[i].numel() for i in self.diff_indices)
        return slow_mode_passes(inputs, self._output_elements or 1) * cost

    def slow_jacobian_over_budget(self) -> bool:
        """Whether gradcheck's full Jacobian (what torch rebuilds for a fast-mode failure's message)
        would take more than what is left of the case's budget: a slow forward makes that so at any
        size."""
        return self.full_jacobian_over_budget() or self.slow_jacobian_s() > max(self.remaining_s(), 0.0)

    def gradgradcheck(self, values: list[Any], *, fast: bool) -> None:
        """torch.autograd.gradgradcheck on float64 `values` (raises GradcheckError on a mismatch)."""
        fn, inputs = self.float64_function(values)
        tol = self.spec.tolerance
        with _without_slow_mode_message(fast and self.slow_jacobian_over_budget()):
            torch.autograd.gradgradcheck(fn, inputs, eps=tol.eps, atol=tol.atol, rtol=tol.rtol, fast_mode=fast)


@contextlib.contextmanager
def _without_slow_mode_message(active: bool) -> Iterator[None]:
    """Replace torch's slow-mode recomputation for a fast-mode failure message (a private helper of
    torch.autograd.gradcheck, present since torch 1.9) with a note, while active."""
    module = sys.modules["torch.autograd.gradcheck"]
    original = getattr(module, "_run_slow_mode_and_get_error", None)
    if not active or original is None:
        yield
        return

    def note(*args: Any, **kwargs: Any) -> str:
        return "\n(the slow-mode Jacobian is not rebuilt for this message: at this size it would not fit the budget)\n"

    module._run_slow_mode_and_get_error = note
    try:
        yield
    finally:
        module._run_slow_mode_and_get_error = original


Case = CheckContext
"""The name checks have always used: a CheckContext is a case plus the door to its user code."""


class NoDifferentiableOutput(Exception):
    """Inputs require grad but no output does."""


NO_OUTPUT_HINT = (
    "forward's outputs are all non-differentiable: did it detach them, or mark them with ctx.mark_non_differentiable?"
)


def as_outputs(result: Any) -> tuple[Any, ...]:
    if isinstance(result, tuple | list):
        return tuple(result)
    return (result,)


def without_graph(outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """`outputs` cut from the graph that made them: detached tensors that still require grad
    where they did (so is_differentiable and output_positions see the same outputs)."""
    return tuple(o.detach().requires_grad_(o.requires_grad) if isinstance(o, torch.Tensor) else o for o in outputs)


def is_differentiable(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad


def differentiable_outputs(outputs: Sequence[Any]) -> list[torch.Tensor]:
    return [o for o in outputs if is_differentiable(o)]


def all_cotangents(outputs: tuple[Any, ...], cotangents: list[torch.Tensor]) -> list[Any]:
    """One grad per output, as the engine passes them: zeros for non-differentiable tensors."""
    it = iter(cotangents)
    grads: list[Any] = []
    for out in outputs:
        if not isinstance(out, torch.Tensor):
            grads.append(None)
        elif out.is_floating_point() and out.requires_grad:
            grads.append(next(it))
        else:
            grads.append(torch.zeros_like(out))
    return grads


def random_like(tensor: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
    return values.to(dtype=tensor.dtype, device=tensor.device)


def _copy(value: Any, dtype: torch.dtype | None) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    copy = value.detach().clone()
    if dtype is not None and copy.is_floating_point():
        copy = copy.to(dtype)
    return copy.requires_grad_(value.requires_grad)


def float64_supported(device: torch.device) -> bool:
    return device.type != "mps"


_INVALID = re.compile(r"returned an invalid gradient at index (\d+) - (.*)", re.S)
_NOT_A_VARIABLE = re.compile(
    r"returned a gradient different than None at position (\d+), but the corresponding forward input was not a Variable"
)
_COUNT = re.compile(r"returned an incorrect number of gradients \(expected (\d+), got (\d+)\)")


def engine_rejection(case: Case, error: BaseException) -> str | None:
    """Say in the user's terms why autograd rejected what backward returned, or None when the
    error is something else."""
    message = str(error)
    if match := _INVALID.search(message):
        index, problem = int(match.group(1)), match.group(2).strip().splitlines()[0]
        name = _slot_name(case, index)
        return f"backward's gradient for {name} is invalid: {problem}"
    if match := _NOT_A_VARIABLE.search(message):
        position = int(match.group(1)) - 1  # the engine counts from 1 here
        return (
            f"backward returned a gradient for {_slot_name(case, position)}, which is not a tensor: "
            "return None in its slot"
        )
    if match := _COUNT.search(message):
        expected, got = match.groups()
        params = ", ".join(case.names) if case.target.is_function else f"{expected} inputs"
        return (
            f"backward returned {got} gradients, forward takes {expected} inputs ({params}): "
            "return exactly one per forward argument (None for non-tensors)"
        )
    return None


def _slot_name(case: Case, index: int) -> str:
    if case.target.is_function and index < len(case.names):
        return f"`{case.names[index]}` (argument {index})"
    return f"input {index} of the inner Function"

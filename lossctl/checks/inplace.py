"""`inplace`: no saved tensor or input is modified in place, and where one is, say which and where.

Autograd's own error ("one of the variables needed for gradient computation has been modified by
an inplace operation") names neither the tensor nor the line. This check records every
save_for_backward (and every tensor autograd saves), and every in-place op with its source line,
then names the saved tensor whose version changed and the op that changed it.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import FunctionCtx
from torch.overrides import TorchFunctionMode

from lossctl.case import Case, all_cotangents, differentiable_outputs
from lossctl.checks.base import Check
from lossctl.checks.common import dtype_name, require_differentiable_inputs
from lossctl.loader import user_location
from lossctl.report import Outcome

_INPLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__", "__iand__"}
VERSION_ERROR = "modified by an inplace operation"


def _where() -> str | None:
    """The user's source line calling into here, without reading source files (cheap)."""
    frames = traceback.StackSummary.extract(traceback.walk_stack(sys._getframe(2)), lookup_lines=False)
    frames.reverse()
    return user_location(list(frames))


def _key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


@dataclass
class _Saved:
    tensor: torch.Tensor
    version: int
    where: str | None
    how: str  # "save_for_backward" or "autograd"
    owner: Any = None
    """The ctx that saved it (save_for_backward): whether it belongs to the graph under test."""


@dataclass
class _Mutation:
    op: str
    key: int
    where: str | None
    phase: str


class _Recorder(TorchFunctionMode):
    """Records in-place ops (name, storage, user source line) while active."""

    def __init__(self) -> None:
        super().__init__()
        self.mutations: list[_Mutation] = []
        self.phase = "forward"

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        target = None
        if (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_DUNDERS:
            target = args[0] if args and isinstance(args[0], torch.Tensor) else None
        elif isinstance(kwargs.get("out"), torch.Tensor):
            target = kwargs["out"]
        if target is not None:
            where = _where()
            self.mutations.append(_Mutation(name, _key(target), where, self.phase))
        return result


@contextlib.contextmanager
def _recording_saves(saved: list[_Saved]) -> Iterator[None]:
    original = FunctionCtx.save_for_backward

    def save_for_backward(ctx: Any, *tensors: Any) -> None:
        where = _where()
        for t in tensors:
            if isinstance(t, torch.Tensor):
                saved.append(_Saved(t, t._version, where, "save_for_backward", ctx))
        original(ctx, *tensors)

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(_Saved(t, t._version, _where(), "autograd"))
        return t

    FunctionCtx.save_for_backward = save_for_backward  # type: ignore[method-assign]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield
    finally:
        FunctionCtx.save_for_backward = original  # type: ignore[method-assign]


def _name(tensor: torch.Tensor, case: Case, values: list[Any], outputs: tuple[Any, ...]) -> str:
    key = _key(tensor)
    for name, value in zip(case.names, values, strict=True):
        if isinstance(value, torch.Tensor) and _key(value) == key:
            return f"input `{name}`"
    for k, out in enumerate(outputs):
        if isinstance(out, torch.Tensor) and _key(out) == key:
            return "the output" if len(outputs) == 1 else f"output {k}"
    return f"an intermediate {tuple(tensor.shape)} {dtype_name(tensor.dtype)}"


def _by(mutations: list[_Mutation], key: int, phase: str | None = None) -> str:
    for m in reversed(mutations):
        if m.key == key and (phase is None or m.phase == phase):
            return f" by {m.op} at {m.where}" if m.where else f" by {m.op}"
    return ""


def check_inplace(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    saved: list[_Saved] = []
    try:
        return _check(case, saved)
    finally:
        # The graph holds the pack hook, which holds this list, which holds the ctx (the graph):
        # a cycle through C++ that Python's collector cannot see. Emptying the list breaks it;
        # without this every run leaked the graph and its copies of the inputs.
        saved.clear()


def _check(case: Case, saved: list[_Saved]) -> Outcome:
    values = case.fresh()
    # fresh() copied case.values, which nothing writes to: they are the originals (no third copy)
    originals = [v.detach() if isinstance(v, torch.Tensor) else None for v in case.values]
    recorder = _Recorder()
    with _recording_saves(saved), recorder:
        outputs = case.call(values)
    # Only what the graph of the outputs holds matters: a Function called inside another's forward
    # (a sparsemax inside a loss) saves tensors for a backward that never runs there.
    in_graph = _graph_nodes(differentiable_outputs(outputs))
    saved[:] = [item for item in saved if item.how == "autograd" or id(item.owner) in in_graph]

    for name, value, original in zip(case.names, values, originals, strict=True):
        if original is None or any(out is value for out in outputs):
            continue  # not a tensor, or returned as an output (mark_dirty)
        if not torch.equal(value.detach(), original) and not _both_nan(value.detach(), original):
            return Outcome.failed(
                f"forward modified input `{name}` in place{_by(recorder.mutations, _key(value))}",
                hint="forward must not change its inputs: work on a copy, or return the input and call "
                "ctx.mark_dirty() if the in-place update is the point",
                data={"argument": name},
            )
    for item in saved:
        if item.how == "save_for_backward" and item.tensor._version != item.version:
            what = _name(item.tensor, case, values, outputs)
            return Outcome.failed(
                f"{what} was saved for backward{_at(item.where)} and then modified in place"
                f"{_by(recorder.mutations, _key(item.tensor), 'forward')}: backward sees the modified values",
                hint="save the tensor after the last in-place change, or modify a clone",
                data={"saved": what},
            )

    diff_out = differentiable_outputs(outputs)
    cotangents = case.random_cotangents(diff_out, "inplace")
    versions = [(item, item.tensor._version) for item in saved]
    recorder.phase = "backward"
    try:
        with recorder:
            if case.target.is_function:
                # Call the backward node on this thread, so the recorder sees its in-place ops
                # (the autograd engine runs backward where a TorchFunctionMode does not reach).
                with torch.no_grad():  # as the engine runs backward without create_graph
                    diff_out[0].grad_fn.apply(*all_cotangents(outputs, cotangents))
            else:
                case.backward(outputs, values, cotangents)
    except RuntimeError as error:
        if VERSION_ERROR not in str(error):
            raise
        culprit = next((item for item in saved if item.tensor._version != item.version), None)
        if culprit is None:
            return Outcome.failed(f"autograd: {str(error).splitlines()[0]}")
        what = _name(culprit.tensor, case, values, outputs)
        return Outcome.failed(
            f"{what}, saved for backward{_at(culprit.where)}, was modified in place"
            f"{_by(recorder.mutations, _key(culprit.tensor))} (version {culprit.version} → "
            f"{culprit.tensor._version}), so backward cannot run",
            hint="modify a clone (y = y.clone(); y.mul_(2)), or use the out-of-place op",
            data={"saved": what},
        )
    for item, before in versions:
        if item.tensor._version != before:
            what = _name(item.tensor, case, values, outputs)
            return Outcome.failed(
                f"backward modified {what} (saved for backward) in place"
                f"{_by(recorder.mutations, _key(item.tensor), 'backward')}",
                hint="a second backward (retain_graph=True) or double backward would see the modified "
                "values: compute into a new tensor",
                data={"saved": what},
            )
    count = sum(1 for item in saved if item.how == "save_for_backward")
    return Outcome.passed(
        f"inputs and {count} saved tensor{'s' * (count != 1)} unmodified through forward and backward",
        data={"saved_tensors": count, "inplace_ops": len(recorder.mutations)},
    )


def _graph_nodes(outputs: list[torch.Tensor], limit: int = 100_000) -> set[int]:
    """ids of the autograd nodes reachable from the outputs (a custom Function's node is its ctx)."""
    seen: set[int] = set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(fn for fn, _ in getattr(node, "next_functions", ()))
    return seen


def _at(where: str | None) -> str:
    return f" at {where}" if where else ""


def _both_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


CHECK = Check.of("inplace", check_inplace)

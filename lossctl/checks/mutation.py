"""`mutation`: no write the version counter misses (raw pointers, `.data`, storage) changes a tensor
autograd relies on.

Kernels that store through raw pointers (Triton's `tl.store` into an input or a saved tensor,
Liger-Kernel #272, unsloth #5002) change bytes without bumping the tensor's version, so autograd's
"modified by an inplace operation" error never fires and backward silently reads the new bytes.
This check keeps a copy of every tensor saved for backward (when it is saved) and of every input
(after forward), and compares bytes: saved tensors when backward reads them and after backward,
inputs after backward.

How it divides the work with its neighbours, so that one write is reported once:
- `inplace` names in-place ops the version counter sees on saved tensors, and any change of an
  input during forward (it compares values, so it sees raw writes there too);
- `grad_output_intact` reports any change of grad_output (it compares values too), so grad_output
  is not compared here;
- this check reports the rest: a saved tensor overwritten without a version bump between save and
  backward or during backward, and an input changed during backward (by any write: nothing else
  looks there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd.function import FunctionCtx

from lossctl.case import Case
from lossctl.checks.base import Check
from lossctl.checks.common import dtype_name, require_differentiable_inputs
from lossctl.report import Outcome

RAW = "without bumping its version (a raw-pointer write: a Triton tl.store, .data, untyped_storage)"


@dataclass
class _Saved:
    tensor: torch.Tensor
    copy: torch.Tensor
    version: int
    changed_before_backward: bool = False
    changed_version: bool = False


@dataclass
class _Saves:
    """Tensors autograd saves while active, each with a copy of its bytes when it was saved: at
    ctx.save_for_backward for a Function (forward may go on to write into it), else when packed.
    A saved input whose bytes still equal the case's original is not copied: the original is the
    copy (a loss saving its input and target would otherwise hold a third copy of both)."""

    originals: list[torch.Tensor]
    """The case's own inputs (case.values), which no check writes to."""
    values: list[object]
    """The copies forward runs on."""
    items: list[_Saved] = field(default_factory=list)
    calls: list[tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=list)

    def snapshot(self, tensor: torch.Tensor) -> torch.Tensor:
        for value, original in zip(self.values, self.originals, strict=True):
            if value is tensor and isinstance(original, torch.Tensor) and _same(tensor, original.detach()):
                return original.detach()
        return tensor.detach().clone()

    def save_call(self, tensor: torch.Tensor) -> None:
        self.calls.append((tensor, self.snapshot(tensor), tensor._version))

    def pack(self, tensor: torch.Tensor) -> int:
        found = next(
            (
                (at_call, version)
                for saved, at_call, version in self.calls
                if saved is tensor or _layout(saved) == _layout(tensor)
            ),
            None,
        )
        copy, version = found if found is not None else (self.snapshot(tensor), tensor._version)
        self.items.append(_Saved(tensor, copy, version))
        return len(self.items) - 1

    def unpack(self, index: int) -> torch.Tensor:
        item = self.items[index]
        if not item.changed_before_backward and not _same(item.tensor, item.copy):
            item.changed_before_backward = True
            item.changed_version = item.tensor._version != item.version
        return item.tensor

    def clear(self) -> None:
        """Let go of every tensor: the graph holds the hooks that hold this object, a cycle
        through C++ that Python's collector cannot see (a saved intermediate's grad_fn is the graph)."""
        self.items.clear()
        self.calls.clear()


@contextlib.contextmanager
def _recording(saves: _Saves) -> Iterator[None]:
    """Copy what a Function saves when it saves it (autograd packs it only after forward returns)."""
    original = FunctionCtx.save_for_backward

    def save_for_backward(ctx: Any, *tensors: Any) -> None:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                saves.save_call(tensor)
        original(ctx, *tensors)

    FunctionCtx.save_for_backward = save_for_backward  # type: ignore[method-assign]
    try:
        with torch.autograd.graph.saved_tensors_hooks(saves.pack, saves.unpack):
            yield
    finally:
        FunctionCtx.save_for_backward = original  # type: ignore[method-assign]


def _layout(tensor: torch.Tensor) -> tuple[object, ...]:
    return (_ptr(tensor), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    a = a.detach()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):  # no temporaries: the common case at any size
        return True
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return False


def _ptr(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _name(case: Case, values: list[object], outputs: tuple[object, ...], tensor: torch.Tensor) -> str:
    def key(t: torch.Tensor) -> tuple[int, int]:
        return t.untyped_storage().data_ptr(), t.storage_offset()

    for name, value in zip(case.names, values, strict=True):
        if isinstance(value, torch.Tensor) and key(value) == key(tensor):
            return f"input `{name}`"
    for k, out in enumerate(outputs):
        if isinstance(out, torch.Tensor) and key(out) == key(tensor):
            return "the output" if len(outputs) == 1 else f"output {k}"
    return f"a {tuple(tensor.shape)} {dtype_name(tensor.dtype)} intermediate"


def check_mutation(case: Case) -> Outcome:
    require_differentiable_inputs(case)
    values = case.fresh()
    saves = _Saves(list(case.values), values)
    try:
        return _check(case, values, saves)
    finally:
        saves.clear()


def _check(case: Case, values: list[object], saves: _Saves) -> Outcome:
    with _recording(saves):
        outputs = case.call(values)
    # Inputs that forward changed, by any write: `inplace` reports those (it compares values).
    changed_in_forward = {
        _ptr(value)
        for value, original in zip(values, case.values, strict=True)
        if isinstance(value, torch.Tensor) and not _same(value, original.detach())
    }
    # An input forward left alone is compared with the case's original (no copy of it is held).
    inputs = {
        name: (
            value,
            value.detach().clone() if _ptr(value) in changed_in_forward else original.detach(),
            value._version,
        )
        for name, value, original in zip(case.names, values, case.values, strict=True)
        if isinstance(value, torch.Tensor)
    }
    diff = [outputs[p] for p in case.output_positions(outputs)]
    cotangents = case.random_cotangents(diff, "mutation")
    torch.autograd.grad(diff, [values[i] for i in case.diff_indices], cotangents, allow_unused=True)

    for item in saves.items:
        if item.changed_before_backward and not item.changed_version and _ptr(item.tensor) not in changed_in_forward:
            what = _name(case, values, outputs, item.tensor)
            return Outcome.failed(
                f"{what}, saved for backward, was overwritten after it was saved, {RAW}: backward "
                "computed with the new bytes",
                hint="save the tensor after the kernel that overwrites it, or let the kernel write a new "
                "tensor; ctx.mark_dirty does not help here, autograd cannot see the write",
                data={"tensor": what, "phase": "forward"},
            )
    for name, (value, copy, version) in inputs.items():
        if any(out is value for out in outputs):
            continue  # returned as an output (mark_dirty): changing it is the point
        if not _same(value, copy):
            visible = value._version != version
            if visible and _ptr(value) in {_ptr(item.tensor) for item in saves.items}:
                continue  # a visible in-place op on a saved tensor: `inplace` names it
            how = "(an in-place op on a tensor kept on ctx)" if visible else RAW
            return Outcome.failed(
                f"backward overwrote input `{name}` in place {how}",
                hint="the caller's tensor now holds other values (often the gradient, written there to save "
                "memory): return a new tensor, or document that the input is consumed",
                data={"tensor": f"input `{name}`", "phase": "backward"},
            )
    for item in saves.items:
        if not item.changed_before_backward and not _same(item.tensor, item.copy):
            if item.tensor._version != item.version:
                continue  # a visible in-place op: `inplace` names it
            what = _name(case, values, outputs, item.tensor)
            return Outcome.failed(
                f"backward overwrote {what} (saved for backward) in place {RAW}",
                hint="a second backward (retain_graph=True) or double backward reads the new bytes: write "
                "the result into a new tensor",
                data={"tensor": what, "phase": "backward"},
            )
    count, n = len(saves.items), len(inputs)
    return Outcome.passed(
        f"{count} saved tensor{'s' * (count != 1)} (from save to after backward) and {n} input{'s' * (n != 1)} "
        "(through backward) keep their bytes: no write behind the version counter",
        data={"inputs": n, "saved_tensors": count},
    )


CHECK = Check.of("mutation", check_mutation)

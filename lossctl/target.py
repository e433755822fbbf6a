"""What is under test: a Function, nn.Module or callable, its forward signature, and how to call it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lossctl.errors import BindError, LoadError


class TargetKind(str, Enum):
    FUNCTION = "function"
    MODULE = "module"
    CALLABLE = "callable"


@dataclass(frozen=True)
class Target:
    """A loaded object under test and the parameters its forward takes (after ctx/self)."""

    ref: str
    obj: Any
    kind: TargetKind
    parameters: tuple[inspect.Parameter, ...] | None
    """None when the signature cannot be read (some builtins): arguments go positionally."""
    signature: str
    """forward's signature as the user wrote it, for error messages."""

    @property
    def name(self) -> str:
        return getattr(self.obj, "__qualname__", None) or getattr(self.obj, "__name__", self.ref)

    @property
    def is_function(self) -> bool:
        return self.kind is TargetKind.FUNCTION

    def required_parameters(self) -> list[str]:
        if self.parameters is None:
            raise BindError(
                f"`{self.ref}` has no readable signature, so lossctl cannot build its inputs",
                hint="write a spec that lists its arguments under `args:`",
            )
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in self.parameters):
            raise BindError(
                f"`{self.signature}` takes *args, so lossctl cannot tell how many inputs to build",
                hint="write a spec that lists its arguments under `args:`",
            )
        return [
            p.name
            for p in self.parameters
            if p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]

    def bind(self, values: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        """Order spec arguments as forward takes them, filling defaults.

        Returns the positional (name, value) pairs and the keyword-only ones. Functions get
        everything positionally, since `Function.apply` takes no keywords.
        """
        if self.parameters is None:
            return list(values.items()), {}
        params = self.parameters
        by_name = {p.name: p for p in params}
        var_positional = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        var_keyword = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        named = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        extra = [
            n
            for n in values
            if n not in by_name or by_name[n].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if extra and var_positional is None and var_keyword is None:
            name = extra[0]
            close = difflib.get_close_matches(name, named, n=1)
            guess = f" Did you mean `{close[0]}`?" if close else ""
            raise BindError(
                f"args.{name}: `{self.signature}` has no parameter `{name}`.{guess}",
                hint="args are bound to forward's parameters by name",
            )
        positional: list[tuple[str, Any]] = []
        keyword: dict[str, Any] = {}
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in values:
                value = values[p.name]
            elif p.default is not p.empty:
                value = p.default
            else:
                raise BindError(
                    f"args: `{self.signature}` needs `{p.name}`, which the spec does not give",
                    hint=f"add `{p.name}:` under args (a tensor spec or a plain value)",
                )
            if p.kind is p.KEYWORD_ONLY:
                if self.is_function:
                    raise BindError(
                        f"`{self.signature}`: keyword-only parameter `{p.name}` cannot be passed "
                        "through Function.apply",
                        hint="make it a positional parameter",
                    )
                _refuse_unchecked_gradient(p.name, value, self.signature)
                keyword[p.name] = value
            else:
                positional.append((p.name, value))
        for name in extra:
            if var_positional is not None:
                positional.append((name, values[name]))
            else:
                _refuse_unchecked_gradient(name, values[name], self.signature)
                keyword[name] = values[name]
        return positional, keyword

    def make_callable(
        self, module_kwargs: Mapping[str, Any], *, device: Any = None, dtype: Any = None
    ) -> Callable[..., Any]:
        """A function of forward's arguments. Modules are built with `module_kwargs` and moved
        to `device`, and their floating parameters to `dtype` when one is given."""
        if self.kind is TargetKind.FUNCTION:
            return self.obj.apply
        if self.kind is TargetKind.MODULE:
            module = self.obj(**module_kwargs)
            if device is not None:
                module = module.to(device)
            if dtype is not None:
                module = module.to(dtype)
            return module
        return self.obj

    def source_location(self) -> tuple[str | None, int | None]:
        """The file and line of the backward (Functions) or forward, for annotations."""
        holder = self.obj
        if self.kind is TargetKind.FUNCTION:
            member = inspect.getattr_static(holder, "backward", None)
        elif self.kind is TargetKind.MODULE:
            member = inspect.getattr_static(holder, "forward", None)
        else:
            member = holder
        member = inspect.unwrap(getattr(member, "__func__", member))  # @once_differentiable wraps backward
        try:
            return inspect.getsourcefile(member), inspect.getsourcelines(member)[1]
        except (TypeError, OSError):
            return None, None


def _refuse_unchecked_gradient(name: str, value: Any, signature: str) -> None:
    """Keyword arguments are passed but not differentiated: a tensor that requires grad there
    would go unchecked, so say so instead of passing silently."""
    if getattr(value, "requires_grad", False):
        raise BindError(
            f"args.{name}: `{signature}` takes `{name}` by keyword, and lossctl checks the gradients "
            "of positional arguments only",
            hint=f"make `{name}` a positional parameter, or set `requires_grad: false` on it",
        )


def classify(obj: Any, ref: str) -> Target:
    """Decide how to call `obj`, or raise LoadError saying what it is instead."""
    import torch

    if inspect.isclass(obj) and issubclass(obj, torch.autograd.Function):
        if obj is torch.autograd.Function or obj.forward is torch.autograd.Function.forward:
            raise LoadError(f"`{ref}` does not define forward", hint="define forward(ctx, ...)")
        params, signature = _function_parameters(obj)
        return Target(ref, obj, TargetKind.FUNCTION, params, signature)
    if inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
        try:
            sig = inspect.signature(obj.forward)
        except (TypeError, ValueError):
            params, text = None, f"{obj.__name__}.forward(...)"
        else:
            params = tuple(sig.parameters.values())[1:]
            text = f"{obj.__name__}.forward{_plain(sig)}"
        return Target(ref, obj, TargetKind.MODULE, params, text)
    if inspect.isclass(obj):
        raise LoadError(
            f"`{ref}` is a class, but not a torch.autograd.Function or nn.Module subclass",
            hint="point lossctl at your Function (or the Module or function that calls it)",
        )
    if inspect.ismodule(obj):
        raise LoadError(f"`{ref}` is a module, not a Function", hint=f"use {ref}.YourFunction")
    if not callable(obj):
        raise LoadError(
            f"`{ref}` is {_describe(obj)}, not a Function, Module or callable",
            hint="point lossctl at a torch.autograd.Function subclass",
        )
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return Target(ref, obj, TargetKind.CALLABLE, None, f"{ref}(...)")
    name = getattr(obj, "__name__", ref)
    return Target(ref, obj, TargetKind.CALLABLE, tuple(sig.parameters.values()), f"{name}{_plain(sig)}")


def _function_parameters(fn: type) -> tuple[tuple[inspect.Parameter, ...], str]:
    from torch.autograd.function import _SingleLevelFunction

    sig = inspect.signature(fn.forward)  # classmethods come bound: cls is already gone
    params = tuple(sig.parameters.values())
    new_style = fn.setup_context is not _SingleLevelFunction.setup_context
    text = f"{fn.__name__}.forward{_plain(sig)}"
    if not new_style and params and params[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        params = params[1:]  # ctx
    return params, text


def _plain(sig: inspect.Signature) -> inspect.Signature:
    """The signature without annotations, which make error messages hard to read."""
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return sig.replace(parameters=params, return_annotation=empty)


def _describe(obj: Any) -> str:
    kind = type(obj).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{article} {kind} ({obj!r:.40})"

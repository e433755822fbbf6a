"""A rank's process: it joins process groups, builds its shard of a case's inputs, and runs
forward, backward and finite-difference probes when the coordinator asks.

Each request is (op, payload); each reply is ("ok", value) or ("raised", description, traceback)
when the user's code raised. Replies carry tensors on the CPU, small enough to pickle.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

STACK_SIGNAL = signal.SIGUSR1
"""Sent by the coordinator to a silent rank: the rank writes its Python stack to its stack file."""


@dataclass
class RankState:
    """What one rank holds between requests."""

    index: int
    """This process's rank in every group it joins (groups take the first W processes)."""
    world_size: int = 0
    case: Any = None
    """The lossctl Case built on this rank's shard of the inputs."""
    global_values: Mapping[str, Any] = field(default_factory=dict)
    shards: dict[str, int | None] = field(default_factory=dict)
    combine: str | None = None
    output_positions: list[int] = field(default_factory=list)
    random_grads: list[Any] = field(default_factory=list)
    """Gradients from the last backward with per-rank random cotangents (what probes compare)."""
    store_path: str | None = None


def rank_main(index: int, connection: Any, cwd: str, stack_path: str, threads: int) -> None:
    """A rank's loop: answer requests until told to stop or the coordinator goes away."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    os.chdir(cwd)
    sys.stdout.flush()
    os.dup2(2, 1)  # the user's prints must not reach stdout, which may carry a JSON report
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # ranks are local: stay on loopback
    stack_file = open(stack_path, "w")  # noqa: SIM115 -- open for the process's lifetime
    faulthandler.register(STACK_SIGNAL, file=stack_file, all_threads=False)
    state = RankState(index)
    from lossctl.errors import LossctlError
    from lossctl.loader import describe_exception, format_user_traceback
    from lossctl.runner import warm_up

    warm_up(torch.device("cpu"))  # autograd's first call imports sympy: before any case's clock starts
    connection.send(("ready", None))

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        op, payload = message
        try:
            reply: tuple[Any, ...] = ("ok", HANDLERS[op](state, payload))
        except LossctlError as error:  # the spec's Function does not load or bind
            reply = ("setup", error.message, error.hint, error.details)
        except BaseException as error:  # the user's code raised (or called sys.exit)
            reply = ("raised", describe_exception(error), format_user_traceback(error))
        connection.send(reply)


def join_group(state: RankState, payload: tuple[int, str, str, float]) -> None:
    """Leave the previous group and join a new one of the first `world_size` processes."""
    import torch.distributed as dist

    world_size, store_path, backend, timeout = payload
    if backend == "nccl":
        import torch

        torch.cuda.set_device(state.index)  # one GPU per rank: rank r on cuda:r
    if dist.is_initialized():
        dist.destroy_process_group()
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group(
        backend, store=store, rank=state.index, world_size=world_size, timeout=timedelta(seconds=timeout)
    )
    state.world_size = world_size
    state.case = None


def build_case(state: RankState, payload: tuple[Any, Mapping[str, int], int, str]) -> dict[str, Any]:
    """Draw the GLOBAL inputs from the seed (every rank draws the same), keep this rank's chunk of
    each sharded argument, and bind them to the target."""
    import torch

    from lossctl.case import Case
    from lossctl.inputs import build_inputs
    from lossctl.loader import load_object
    from lossctl.spec import CasePoint, TensorArg, with_default_args
    from lossctl.target import classify

    spec, dims, seed, device_type = payload
    device = torch.device("cuda", state.index) if device_type == "cuda" else torch.device("cpu")
    target = classify(load_object(spec.function, base_dir=spec.base_dir)[0], spec.function)
    if not spec.args_given:
        spec = with_default_args(spec, target.required_parameters())
    global_values = build_inputs(spec, dims, seed=seed, device="cpu")
    local: dict[str, Any] = {}
    shards: dict[str, int | None] = {}
    for name, value in global_values.items():
        arg = spec.args[name]
        shard = arg.shard if isinstance(arg, TensorArg) else None
        shards[name] = shard
        if isinstance(value, torch.Tensor):
            piece = value.detach().chunk(state.world_size, dim=shard)[state.index] if shard is not None else value
            value = piece.detach().clone().to(device).requires_grad_(value.requires_grad)
        local[name] = value
    positional, keyword = target.bind(local)
    point = CasePoint(dims=dict(dims), swept=())
    state.case = Case(
        id=spec.name,
        spec=spec,
        point=point,
        target=target,
        device=device,
        seed=seed,
        names=tuple(n for n, _ in positional),
        values=tuple(v for _, v in positional),
        kwargs=keyword,
    )
    state.case.function()  # build a Module now: its constructor's error belongs to setup
    state.global_values = global_values
    state.shards = {n: shards.get(n) for n in state.case.names}
    state.combine = spec.combine
    return {"diff_names": list(state.case.diff_names), "shards": [state.shards[n] for n in state.case.diff_names]}


def run_vjp(state: RankState, mode: str) -> dict[str, Any]:
    """Forward and backward on this rank's shard. `mode` "random": an independent random
    cotangent per rank; "convention": this rank's share of one global cotangent."""
    import torch

    from lossctl.case import NoDifferentiableOutput, differentiable_outputs
    from lossctl.distributed.program import combine_mode, convention_cotangent, rank_cotangent

    case = state.case
    values = case.fresh()
    outputs_all = case.call(values)
    state.output_positions = case.output_positions(outputs_all)
    outputs = differentiable_outputs(outputs_all)
    if not outputs:
        raise NoDifferentiableOutput()
    modes = [combine_mode(state.combine, o) for o in outputs]
    if mode == "random":
        cotangents = [rank_cotangent(o, case.seed, state.world_size, state.index, i) for i, o in enumerate(outputs)]
    else:
        cotangents = [
            convention_cotangent(o, m, case.seed, state.world_size, state.index, i)
            for i, (o, m) in enumerate(zip(outputs, modes, strict=True))
        ]
    inputs = [values[i] for i in case.diff_indices]
    grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True) if inputs else ()
    if mode == "random":
        state.random_grads = [None if g is None else g.detach() for g in grads]
    return {
        "outputs": [o.detach().cpu() for o in outputs],
        "modes": modes,
        "grads": [None if g is None else g.detach().cpu() for g in grads],
    }


def run_probes(state: RankState, per_shard: int) -> list[tuple[str, int | None, float, float, float]]:
    """Central differences of ⟨c_r, output_r⟩ (c_r this rank's random cotangent) along seeded
    directions over the GLOBAL inputs: for each differentiable argument, `per_shard` directions
    on each rank's shard (zero elsewhere), or over the whole tensor when every rank holds it.
    Every rank evaluates every direction (the program's collectives need all ranks), and returns
    (argument, owner rank or None, f(x + εv), f(x − εv), ⟨its gradient, v on its shard⟩)."""
    import torch

    from lossctl.case import random_like
    from lossctl.distributed.program import rank_cotangent
    from lossctl.inputs import derive_seed

    case = state.case
    eps = case.spec.tolerance.eps
    base = case.fresh()
    results = []
    for slot, (position, name) in enumerate(zip(case.diff_indices, case.diff_names, strict=True)):
        owners = range(state.world_size) if state.shards[name] is not None else [None]
        for owner in owners:
            for j in range(per_shard):
                direction = random_like(base[position], derive_seed(case.seed, "dist-probe", name, owner, j))
                direction = direction / direction.norm().clamp_min(1e-300)
                mine = owner is None or owner == state.index
                grad = state.random_grads[slot] if slot < len(state.random_grads) else None
                analytic = float((grad * direction).sum()) if mine and grad is not None else 0.0
                values = []
                for sign in (1.0, -1.0):
                    shifted = list(base)
                    if mine:
                        shifted[position] = base[position].detach() + sign * eps * direction
                    with torch.no_grad():
                        outputs = case.call(shifted)
                    picked = [outputs[i] for i in state.output_positions]
                    total = 0.0
                    for i, out in enumerate(picked):
                        cot = rank_cotangent(out, case.seed, state.world_size, state.index, i)
                        total += float((cot.double() * out.double()).sum())
                    values.append(total)
                results.append((name, owner, values[0], values[1], analytic))
    return results


def run_reference(state: RankState, _: Any) -> dict[str, Any]:
    """The single-process truth on the GLOBAL inputs, in a 1-rank group: the spec's `reference:`
    (a plain function), else the target itself at world size 1. Backward with the global
    cotangent of every world size."""
    import torch

    from lossctl.case import Case, differentiable_outputs
    from lossctl.checks.reference import load_reference
    from lossctl.distributed.program import global_cotangent

    local = state.case
    values = [state.global_values.get(n, v) for n, v in zip(local.names, local.values, strict=True)]
    case = Case(
        id=local.id,
        spec=local.spec,
        point=local.point,
        target=local.target,
        device=local.device,
        seed=local.seed,
        names=local.names,
        values=tuple(v.to(local.device) if isinstance(v, torch.Tensor) else v for v in values),
        kwargs=local.kwargs,
    )
    fresh = case.fresh()
    if case.spec.reference:
        call: Callable[..., Any] = load_reference(case)
        kwargs: dict[str, Any] = {}
    else:
        call, kwargs = case.function(), dict(case.kwargs)
    outputs_all = call(*fresh, **kwargs)
    outputs = differentiable_outputs(outputs_all if isinstance(outputs_all, tuple | list) else (outputs_all,))
    cotangents = [global_cotangent(o.shape, o, case.seed, i) for i, o in enumerate(outputs)]
    inputs = [fresh[i] for i in case.diff_indices]
    grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True) if outputs and inputs else ()
    return {
        "outputs": [o.detach().cpu() for o in outputs],
        "grads": [None if g is None else g.detach().cpu() for g in grads],
    }


def run_battery(state: RankState, payload: tuple[Any, int, Any]) -> list[Any]:
    """The single-process battery on one point of the spec, in this 1-rank group (where every
    collective is the identity)."""
    from lossctl.runner import Task, run_task

    job, point_index, options = payload
    return run_task(Task(job, point_index), options)


HANDLERS: dict[str, Callable[[RankState, Any], Any]] = {
    "join": join_group,
    "case": build_case,
    "vjp": run_vjp,
    "probe": run_probes,
    "reference": run_reference,
    "battery": run_battery,
}

"""What recording the Function's activity (lossctl.activity: a count and two clock reads per call) costs.

    make bench-progress       (or: python benchmarks/progress.py [spec files] [--rounds R])

Paired and interleaved, in one process: each round times the default battery on every case (in-process,
warm, no rendering) once with the recording on and once with `activity.call` replaced by a bare call,
in alternating order, and the per-call cost on the smallest case. Reports the median ratio (on/off) with
its interquartile range over rounds, and the thread count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from lossctl import activity  # noqa: E402
from lossctl.runner import RunOptions, build_cases, plan_tasks, run_task, warm_up  # noqa: E402
from lossctl.suite import collect  # noqa: E402

RECORDING = activity.call


def bare(function, values, kwargs):  # the same door, recording nothing
    return function(*values, **kwargs)


def battery_seconds(tasks, options) -> float:
    start = time.perf_counter()
    for task in tasks:
        run_task(task, options)
    return time.perf_counter() - start


def per_call_seconds(case, calls: int) -> float:
    values = case.fresh()
    start = time.perf_counter()
    for _ in range(calls):
        outputs = case.call(values)
        if outputs[0].requires_grad:
            outputs[0].sum().backward()
    return (time.perf_counter() - start) / calls


def quartiles(samples: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(samples, n=4)
    return q1, median, q3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="*", default=[str(p) for p in sorted(Path("configs").glob("*.yaml"))])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    jobs = [job for job in collect(args.specs, configs_dir=Path("configs")) if job.spec.world_size is None]
    tasks = plan_tasks(jobs)
    options = RunOptions(device="cpu")
    device = torch.device("cpu")
    warm_up(device)
    (smallest,) = build_cases(tasks[0].job, device, tasks[0].job.spec.seed, points=(tasks[0].point,))
    battery_seconds(tasks, options)  # warm: imports, caches
    battery = {"on": [], "off": []}
    call = {"on": [], "off": []}
    for round_ in range(args.rounds):
        for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            activity.call = RECORDING if mode == "on" else bare
            battery[mode].append(battery_seconds(tasks, options))
            call[mode].append(per_call_seconds(smallest, 2000))
    activity.call = RECORDING
    for name, samples, unit, scale in (("battery", battery, "s", 1), ("forward+backward", call, "µs", 1e6)):
        ratios = [on / off for on, off in zip(samples["on"], samples["off"], strict=True)]
        q1, median, q3 = quartiles(ratios)
        on, off = statistics.median(samples["on"]) * scale, statistics.median(samples["off"]) * scale
        print(
            f"{name:17} recording {on:8.2f} {unit}   bare {off:8.2f} {unit}   "
            f"ratio median {median:.3f} (IQR {q1:.3f}–{q3:.3f})"
        )
    print(
        f"{len(tasks)} cases of {', '.join(args.specs)}; {args.rounds} paired rounds; per-call on {smallest.id}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

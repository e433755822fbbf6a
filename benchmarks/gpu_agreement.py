"""Does `lossctl bench --device cuda` measure what CUDA events measure for the same call?

    .venv/bin/python benchmarks/gpu_agreement.py [--device cuda] [-N N] [-C C] [--dtype bfloat16] [--repeats R]

One case: lossctl.examples.cross_entropy.CrossEntropyLoss on [N, C] logits (default 8192 × 32000,
bfloat16; constant, since lossctl draws seeded inputs serially on the CPU and cross-entropy's cost
does not depend on the values) with int64 targets, forward+backward, timed

* by lossctl, R times (default 3): `run_bench` on a one-case spec, the forward_backward median;
* directly, interleaved with those runs: the same call, `torch.autograd.grad(CrossEntropyLoss.apply(
  logits, target), (logits,), (grad_output,))`, after 10 warm-up calls, in blocks of `number`
  calls between two CUDA events (the GPU's own clock, no host overhead between calls but the
  launches), the median over blocks of the per-call time.

Target (issue 13): lossctl's median within 5% of the direct one. Exit code 1 if missed.
`--device cpu` runs the same plumbing with perf_counter around synchronized blocks (no events),
at whatever size is given: for testing this script without a GPU, not for its numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from lossctl.bench import BenchOptions, run_bench  # noqa: E402
from lossctl.device import resolve_device, synchronize  # noqa: E402
from lossctl.examples.cross_entropy import CrossEntropyLoss  # noqa: E402
from lossctl.spec import load_specs  # noqa: E402
from lossctl.suite import Job  # noqa: E402

TARGET = 0.05


def lossctl_median(device: str, n: int, c: int, dtype: str, min_time: float) -> float:
    spec_text = (
        "function: lossctl.examples.cross_entropy.CrossEntropyLoss\n"
        f"dims: {{N: {n}, C: {c}}}\n"
        "args:\n"
        f"  logits: {{shape: [N, C], dtype: {dtype}, init: constant, value: 0.5}}\n"
        "  target: {shape: [N], dtype: int64, high: C}\n"
    )
    jobs = [Job(spec) for spec in load_specs(spec_text, source="gpu_agreement.yaml")]
    report = run_bench(jobs, BenchOptions(device=device, min_time=min_time, roofline=False))
    (case,) = report.cases
    if case.error or case.function_result is None or case.function_result.forward_backward is None:
        sys.exit(f"lossctl bench failed on the case: {case.error}")
    return case.function_result.forward_backward.median


def direct_median(device: torch.device, n: int, c: int, dtype: torch.dtype, min_time: float) -> float:
    generator = torch.Generator().manual_seed(0)
    logits = torch.full((n, c), 0.5, device=device, dtype=dtype, requires_grad=True)
    target = torch.randint(0, c, (n,), generator=generator).to(device)
    grad_output = torch.randn((), generator=generator).to(device=device, dtype=dtype)

    def call() -> None:
        torch.autograd.grad(CrossEntropyLoss.apply(logits, target), (logits,), (grad_output,))

    for _ in range(10):
        call()
    synchronize(device)
    began = time.perf_counter()
    call()
    synchronize(device)
    once = max(time.perf_counter() - began, 1e-6)
    number = max(1, int(0.02 / once))  # blocks of ~20 ms
    per_call: list[float] = []
    deadline = time.perf_counter() + min_time
    while time.perf_counter() < deadline or len(per_call) < 5:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(number):
                call()
            end.record()
            end.synchronize()
            per_call.append(start.elapsed_time(end) / 1e3 / number)
        else:
            synchronize(device)
            began = time.perf_counter()
            for _ in range(number):
                call()
            synchronize(device)
            per_call.append((time.perf_counter() - began) / number)
    return statistics.median(per_call)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("-N", type=int, default=8192)
    parser.add_argument("-C", type=int, default=32000)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"CrossEntropyLoss forward+backward, logits {args.dtype} [{args.N}, {args.C}]; torch {torch.__version__}, "
        f"{device} ({name}), min_time {args.min_time} s, {args.repeats} repeats"
    )
    mine, direct = [], []
    for i in range(args.repeats):
        mine.append(lossctl_median(str(device), args.N, args.C, args.dtype, args.min_time))
        direct.append(direct_median(device, args.N, args.C, dtype, args.min_time))
        clock = "CUDA events" if device.type == "cuda" else "perf_counter"
        print(
            f"  run {i + 1}: lossctl {mine[-1] * 1e3:.4f} ms   direct ({clock}) {direct[-1] * 1e3:.4f} ms   "
            f"lossctl/direct {mine[-1] / direct[-1] - 1:+.2%}"
        )
    difference = statistics.median(mine) / statistics.median(direct) - 1
    agree = abs(difference) < TARGET
    print(
        f"agreement: lossctl median {statistics.median(mine) * 1e3:.4f} ms vs direct "
        f"{statistics.median(direct) * 1e3:.4f} ms: {difference:+.2%} (target within {TARGET:.0%}): "
        f"{'OK' if agree else 'MISSED'}"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

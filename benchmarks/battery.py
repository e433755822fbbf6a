"""What lossctl's default battery costs per case, next to a bare torch.autograd.gradcheck call.

    make bench            (or: python benchmarks/battery.py [spec files or folders])

For every case of the given specs (default: configs/): the median wall time of a bare
`torch.autograd.gradcheck(fn, float64 inputs)` — what users write by hand — and of lossctl's
default battery on the same case (warm, in-process, no rendering), and their ratio. Issue 3's
target: the battery stays under ~3× gradcheck at default sizes.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from lossctl.runner import RunOptions, run_checks  # noqa: E402
from lossctl.suite import Job, collect  # noqa: E402

REPEATS = 5


def median_time(work) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bare_gradcheck(job: Job) -> float:
    """Time gradcheck exactly as a user would call it on the case's inputs (float64, defaults)."""
    report_case = {}

    def capture() -> None:
        from lossctl.case import Case
        from lossctl.inputs import build_inputs
        from lossctl.loader import load_object
        from lossctl.spec import sweep
        from lossctl.target import classify

        obj, _ = load_object(job.spec.function, base_dir=job.spec.base_dir)
        target = classify(obj, job.spec.function)
        point = sweep(job.spec)[report_case["index"]]
        values = build_inputs(job.spec, point.dims, seed=job.spec.seed)
        positional, keyword = target.bind(values)
        case = Case("bench", job.spec, point, target, torch.device("cpu"), job.spec.seed,
                    tuple(n for n, _ in positional), tuple(v for _, v in positional), keyword)
        values64 = case.fresh(torch.float64)
        inputs = tuple(values64[i] for i in case.diff_indices)

        def fn(*diff):
            return case.call(case.substitute(values64, diff), torch.float64)

        report_case["run"] = lambda: torch.autograd.gradcheck(fn, inputs)

    return capture, report_case


def main(argv: list[str]) -> int:
    targets = argv or ["configs/"]
    jobs = collect(targets, configs_dir=Path("configs"))
    options = RunOptions(device="cpu")
    run_checks(jobs[:1], options)  # warm up imports and autograd
    print(f"{'case':34} {'gradcheck ms':>13} {'battery ms':>11} {'ratio':>6}   slowest checks")
    ratios = []
    from lossctl.spec import sweep

    for job in jobs:
        for index, _ in enumerate(sweep(job.spec)):
            capture, holder = bare_gradcheck(job)
            holder["index"] = index
            capture()
            gradcheck_s = median_time(holder["run"])
            point_job = _single_point(job, index)
            reports = []
            battery_s = median_time(lambda pj=point_job: reports.append(run_checks([pj], options)))
            case = reports[-1].cases[0]
            slowest = sorted(case.checks, key=lambda c: -c.duration_ms)[:3]
            ratio = battery_s / gradcheck_s
            ratios.append(ratio)
            slow = ", ".join(f"{c.check} {c.duration_ms:.0f}" for c in slowest)
            print(f"{case.case:34} {gradcheck_s * 1e3:13.1f} {battery_s * 1e3:11.1f} {ratio:6.2f}   {slow}")
    print(f"median ratio {statistics.median(ratios):.2f}, max {max(ratios):.2f} (target: under ~3)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS} runs")
    return 0


def _single_point(job: Job, index: int) -> Job:
    from dataclasses import replace

    from lossctl.spec import sweep

    point = sweep(job.spec)[index]
    dims = {k: (v,) for k, v in point.dims.items()}
    return replace(job, spec=replace(job.spec, dims=dims))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

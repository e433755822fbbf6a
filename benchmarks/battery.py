"""What lossctl's default battery costs per case, next to a bare torch.autograd.gradcheck call.

    make bench            (or: python benchmarks/battery.py [spec files or folders])

For every case of the given specs (default: configs/; distributed specs, which need their ranks'
process group, are left out): the median wall time of a bare
`torch.autograd.gradcheck(fn, float64 inputs)` — what users write by hand — and of lossctl's
default battery on the same case (in-process, warm, no rendering), and their ratio. Issue 3's
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

from lossctl.case import Case  # noqa: E402
from lossctl.distributed import is_distributed  # noqa: E402
from lossctl.runner import RunOptions, Task, build_cases, plan_tasks, run_task, warm_up  # noqa: E402
from lossctl.suite import collect  # noqa: E402

REPEATS = 5


def median_time(work) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bare_gradcheck(case: Case) -> None:
    """gradcheck exactly as a user calls it on this case's inputs: float64, default settings."""
    values = case.fresh(torch.float64)
    inputs = tuple(values[i] for i in case.diff_indices)

    def fn(*diff):
        return case.call(case.substitute(values, diff), torch.float64)

    torch.autograd.gradcheck(fn, inputs)


def main(argv: list[str]) -> int:
    jobs = [job for job in collect(argv or ["configs/"], configs_dir=Path("configs")) if not is_distributed(job.spec)]
    device = torch.device("cpu")
    options = RunOptions(device="cpu")
    warm_up(device)
    print(f"{'case':28} {'gradcheck ms':>13} {'battery ms':>11} {'ratio':>6}   slowest checks (ms)")
    ratios = []
    for task in plan_tasks(jobs):
        (case,) = build_cases(task.job, device, task.job.spec.seed, points=(task.point,))
        gradcheck_s = median_time(lambda c=case: bare_gradcheck(c))
        results = []
        battery_s = median_time(lambda t=task, out=results: out.append(run_task(Task(t.job, t.point), options)))
        (report,) = results[-1]
        ratio = battery_s / gradcheck_s
        ratios.append(ratio)
        slowest = sorted(report.checks, key=lambda c: -c.duration_ms)[:3]
        slow = ", ".join(f"{c.check} {c.duration_ms:.0f}" for c in slowest)
        print(f"{report.case:28} {gradcheck_s * 1e3:13.1f} {battery_s * 1e3:11.1f} {ratio:6.2f}   {slow}")
    print(f"median ratio {statistics.median(ratios):.2f}, max {max(ratios):.2f} (target: under ~3)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

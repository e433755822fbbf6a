"""What each check costs per case: the median of its own wall time over repeated runs.

    python benchmarks/check_costs.py [--checks a,b] [spec files or folders]   (default: configs/)

Runs the chosen checks (default: every check, the opt-in ones included) on every case of the specs
REPEATS times in-process, after one warm-up run, and prints each check's median ms per case with
the spread (min–max), then the total of the medians per case. The thread count is printed with
the numbers: compare runs made with the same one. On a machine shared with other jobs, run it
with OMP_NUM_THREADS=1: with two threads every small op can wait a scheduler slice for the second.
"""

from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from lossctl.checks import registry  # noqa: E402
from lossctl.runner import RunOptions, Task, plan_tasks, run_task, warm_up  # noqa: E402
from lossctl.suite import collect  # noqa: E402

REPEATS = 5


def main(argv: list[str]) -> int:
    checks = tuple(c.id for c in registry())
    if argv[:1] == ["--checks"]:
        checks, argv = tuple(argv[1].split(",")), argv[2:]
    jobs = collect(argv or ["configs/"], configs_dir=Path("configs"))
    options = RunOptions(device="cpu", checks=checks)
    warm_up(torch.device("cpu"))
    tasks = plan_tasks(jobs)
    samples: dict[str, dict[str, list[float]]] = {}
    for repeat in range(REPEATS + 1):
        for task in tasks:
            for report in run_task(Task(task.job, task.point), options):
                if repeat == 0:
                    continue  # warm-up: first compiles, first imports
                row = samples.setdefault(report.case, {})
                for result in report.checks:
                    row.setdefault(result.check, []).append(result.duration_ms)
    cases = list(samples)
    width = max(len(c) for c in checks)
    print(f"{'check':{width}}  " + "  ".join(f"{c[:22]:>22}" for c in cases))
    totals = dict.fromkeys(cases, 0.0)
    for check in checks:
        cells = []
        for case in cases:
            times = samples[case].get(check, [])
            if not times:
                cells.append(f"{'-':>22}")
                continue
            median = statistics.median(times)
            totals[case] += median
            cells.append(f"{median:9.1f} ({min(times):.1f}–{max(times):.1f})".rjust(22))
        print(f"{check:{width}}  " + "  ".join(cells))
    print(f"{'total':{width}}  " + "  ".join(f"{totals[c]:22.1f}" for c in cases))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median (min–max) of {REPEATS} runs, ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""lossctl's fixed cost: `lossctl check` on one tiny Function next to a bare script that imports
torch and runs gradcheck on it — what a user would otherwise write.

    make bench-startup        (or: python benchmarks/startup.py [pairs])

Each pair runs both commands as fresh processes, one after the other (order alternating), timed
whole-process with a wall clock. Prints each pair, then the median of each and the median of the
per-pair ratios with its spread. Issue 12's target: the ratio ≤ 1.2. Exits 1 when it is missed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = "lossctl.examples.seed.CustomLossFunction"
BARE = f"""
import torch
from {TARGET.rsplit(".", 1)[0]} import {TARGET.rsplit(".", 1)[1]} as F
a = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
torch.autograd.gradcheck(F.apply, (a, b))
"""
COMMANDS = {
    "bare import torch + gradcheck": [sys.executable, "-c", BARE],
    "lossctl check --checks gradcheck": [str(BIN / "lossctl"), "check", TARGET, "--checks", "gradcheck"],
}
TARGET_RATIO = 1.2


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - start


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    names = list(COMMANDS)
    for command in COMMANDS.values():  # warm the file cache once
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in names}
    ratios = []
    print(f"{'pair':>4}  {'bare s':>7}  {'lossctl s':>9}  ratio")
    for i in range(pairs):
        order = names if i % 2 == 0 else names[::-1]
        measured = {name: wall(COMMANDS[name]) for name in order}
        for name in names:
            times[name].append(measured[name])
        ratios.append(measured[names[1]] / measured[names[0]])
        print(f"{i + 1:>4}  {measured[names[0]]:>7.3f}  {measured[names[1]]:>9.3f}  {ratios[-1]:.3f}")
    for name in names:
        print(f"{name}: median {statistics.median(times[name]):.3f} s")
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive")
    median = statistics.median(ratios)
    print(
        f"ratio lossctl / bare: median {median:.3f} (IQR {quartiles[0]:.3f}–{quartiles[2]:.3f}, {pairs} pairs, "
        f"{os.cpu_count()} cores); target ≤ {TARGET_RATIO}"
    )
    return 0 if median <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())

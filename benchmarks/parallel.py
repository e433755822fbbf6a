"""What worker isolation costs and what -j buys: a 20-spec suite run by the real CLI.

    make bench-parallel        (or: python benchmarks/parallel.py [spec file])

The default suite is tests/suites/twenty.yaml with its sizes raised (N=48, C=16: 768-element
inputs, slow-mode gradcheck), so each case costs a few hundred ms of real checking.

Times whole `lossctl check` processes (start-up included, as CI sees them), median of 3 runs each:
-j 0 (in-process: no isolation), -j 1 (one isolated worker) and -j 2 (two workers). The overhead
of isolation is (-j 1) − (-j 0): the worker's fork from the preloaded server and its warm-up, plus
shipping each case's results back.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def wall_time(args: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            sys.exit(f"lossctl failed:\n{done.stderr}")
    return statistics.median(samples)


def heavier_suite() -> str:
    source = (ROOT / "tests" / "suites" / "twenty.yaml").read_text()
    text = source.replace("{N: [4, 6], C: 3}", "{N: 48, C: 16}").replace("{N: 5, C: 3}", "{N: 48, C: 16}")
    path = Path(tempfile.mkdtemp()) / "twenty_heavier.yaml"
    path.write_text(text)
    return str(path)


def main(argv: list[str]) -> int:
    suite = argv[0] if argv else heavier_suite()
    lossctl = [sys.executable, "-m", "lossctl", "check", suite, "--format", "json"]
    times = {jobs: wall_time([*lossctl, "-j", str(jobs)]) for jobs in (0, 1, 2)}
    cases = 20 if suite.endswith("twenty_heavier.yaml") else None
    print(f"suite: {suite}{f' ({cases} cases)' if cases else ''}, {os.cpu_count()} cores, median of {RUNS} runs")
    print(f"{'mode':28} {'wall s':>8}")
    print(f"{'-j 0 (in-process)':28} {times[0]:8.2f}")
    print(f"{'-j 1 (one isolated worker)':28} {times[1]:8.2f}")
    print(f"{'-j 2 (two workers)':28} {times[2]:8.2f}")
    print(
        f"isolation overhead: {times[1] - times[0]:+.2f} s per run"
        + (f" ({(times[1] - times[0]) / cases * 1e3:+.0f} ms per case)" if cases else "")
    )
    print(f"-j 2 vs -j 1: {times[1] / times[2]:.2f}× faster")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

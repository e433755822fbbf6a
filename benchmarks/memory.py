"""Peak memory of each check at the sizes losses really run at, in input copies and in forward+backwards.

    make bench-memory      (or: python benchmarks/memory.py [spec files] [--checks IDS] [--budget S])

Runs each spec (default: benchmarks/scale/MeanSquaredError.yaml, [10⁶, 10] float64: input and
target 80 MB each) as one `lossctl check -j 0 --format json` process with the default battery
(gradient_blocks joins: the case is large) and prints, per check, the peak memory above the case's
baseline (its inputs built) that the report gives (CheckResult.peak_mb: Linux's VmHWM reset per
check), as a multiple of the inputs' bytes (all tensor inputs together) and of one forward+backward's
own peak (measured once per case). Target for the checks marked `*` (issue 9 item 6's owner): at most
one forward+backward's peak + 4 input copies. Threads: torch's default here (`threads` printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = [ROOT / "benchmarks" / "scale" / "MeanSquaredError.yaml"]
OWNED = {"gradient_blocks", "mutation", "inplace", "undefined_grad", "autocast", "forward"}
"""The checks (and the runner's own forward probe) whose memory this benchmark's target binds."""
TARGET_COPIES = 4.0


def run_report(spec: Path, extra: list[str]) -> dict:
    """One in-process `lossctl check` of the spec; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "lossctl", "check", str(spec), "-j", "0", "-q"]
        command += ["--format", "json", "--output", str(path), *extra]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if not path.exists():
            raise SystemExit(f"no report from {' '.join(command)}:\n{done.stdout}{done.stderr}")
        return json.loads(path.read_text())


def print_case(case: dict, threads: int) -> int:
    """The per-check table of one case; returns how many owned checks miss the target."""
    r = case["resources"]
    inputs, unit = r.get("inputs_mb"), r.get("forward_backward_peak_mb")
    print(
        f"{case['case']} {case['dims']}: inputs {inputs:.0f} MB, baseline RSS {r.get('baseline_rss_mb', 0):.0f} MB, "
        f"one forward+backward +{unit or 0:.0f} MB; case peak RSS {r.get('peak_rss_mb', 0):.0f} MB "
        f"(+{r.get('peak_above_baseline_mb', 0):.0f} MB); checks {r['checks_s']:.1f} s; torch threads {threads}"
    )
    limit = (unit or 0.0) + TARGET_COPIES * (inputs or 0.0)
    print(f"{'check':20} {'status':8} {'+MB':>7} {'×inputs':>8} {'×fwd+bwd':>9}  target (* = owned: ≤ {limit:.0f} MB)")
    missed = 0
    for check in case["checks"]:
        peak = check.get("peak_mb")
        if peak is None:
            continue
        copies = f"{peak / inputs:8.2f}" if inputs else f"{'-':>8}"
        passes = f"{peak / unit:9.2f}" if unit else f"{'-':>9}"
        owned = check["check"] in OWNED and check["status"] != "skipped"
        mark = ""
        if owned:
            ok = peak <= limit
            missed += not ok
            mark = "* ok" if ok else "* OVER"
        print(f"{check['check']:20} {check['status']:8} {peak:7.0f} {copies} {passes}  {mark}")
    return missed


def main(argv: list[str]) -> int:
    extra: list[str] = []
    for flag in ("--checks", "--budget"):
        if flag in argv:
            at = argv.index(flag)
            extra += argv[at : at + 2]
            argv = argv[:at] + argv[at + 2 :]
    specs = [Path(a) for a in argv] or DEFAULT_SPECS
    missed = 0
    for spec in specs:
        report = run_report(spec, extra)
        for case in report["cases"]:
            missed += print_case(case, report["environment"]["threads"])
    print(f"{missed} owned check(s) over one forward+backward + {TARGET_COPIES:g} input copies")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

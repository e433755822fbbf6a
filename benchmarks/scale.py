"""`lossctl check` at the sizes losses really run at: verdict, wall time, cost and peak memory per case.

    make bench-scale      (or: python benchmarks/scale.py [spec files] [--checks IDS])

Each spec under benchmarks/scale/ (a correct or deliberately broken Function from
lossctl/examples/scale.py at 10⁶–10⁷ elements, or lossctl/examples/slow.py: small, with a 0.2 s
forward) runs as its own `lossctl check` process with the default battery (the case's budget plan
gives every check its share of the 60 s --budget: its full method, a smaller one, or a skip saying
why; gradient_blocks joins because the cases are large), or `--checks IDS`. Per case it prints the verdict against
the expected one (a file name starting with a correct Function's name expects PASS), the wall time
of the whole process (interpreter start, imports, input building included), that time as a multiple
of one forward+backward of the case (as the case measured it: the report's resources), and the peak
RSS of the process and its workers (os.wait4's ru_maxrss). Target: every verdict right, each case ≤ 60 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "benchmarks" / "scale"
CHECKS = ""
"""The default battery (`--checks IDS` narrows it)."""
CORRECT = {
    "MeanSquaredError",
    "ChunkedCrossEntropy",
    "TiledCrossEntropy",
    "Float32OnlyCrossEntropy",
    "SlowMeanSquaredError",
}
TARGET_SECONDS = 60.0


def run_case(spec: Path, checks: str) -> dict[str, object]:
    """One `lossctl check` process: its exit code, wall time, peak RSS and JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-m",
            "lossctl",
            "check",
            str(spec),
            "--format",
            "json",
            "--output",
            str(report_path),
        ]
        if checks:
            command += ["--checks", checks]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read() if process.stdout else b""
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    # lossctl resets the kernel's peak-RSS mark before each check (per-check figures), which also
    # lowers what wait4 reports: the process's peak is the larger of it and the cases' own peaks
    cases = report.get("cases", []) if isinstance(report, dict) else []
    peaks = [(c.get("resources") or {}).get("peak_rss_mb") or 0.0 for c in cases]
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "peak_mb": max([usage.ru_maxrss / 1024, *peaks]),
        "report": report,
        "output": output.decode(errors="replace"),
    }


def summarize(result: dict[str, object]) -> tuple[str, float | None, str]:
    """The verdict, one forward+backward in seconds, and the detail of the row that decided it."""
    report = result["report"]
    if not isinstance(report, dict) or not report.get("cases"):
        return "NO REPORT", None, str(result["output"]).strip().splitlines()[-1:]
    case = report["cases"][0]
    checks = case["checks"]
    step = (case.get("resources") or {}).get("forward_backward_s")
    for check in checks:
        plan = (check.get("data") or {}).get("plan")
        if plan and step is None:
            step = plan.get("step_seconds")
    over = [c["check"] for c in checks if c["status"] == "skipped" and c["detail"].startswith("would need")]
    reduced = [
        f"{c['check']} {c['data']['planned']['passes']:.0f}/{c['data']['planned']['nominal_passes']:.0f}×"
        for c in checks
        if (c.get("data") or {}).get("planned", {}).get("method") == "reduced"
    ]
    skipped = f" [skipped for the budget: {', '.join(over)}]" if over else ""
    skipped += f" [reduced by the plan: {', '.join(reduced)}]" if reduced else ""
    bad = [c for c in checks if c["status"] in ("failed", "error")]
    if bad:
        names = ", ".join(c["check"] for c in bad)
        first = next((c for c in bad if c["check"] == "gradient_blocks"), bad[0])
        return "FAIL", step, f"failed: {names}{skipped} — {first['check']}: {first['detail']}"
    blocks = next((c for c in checks if c["check"] == "gradient_blocks"), checks[-1])
    return "PASS", step, f"{blocks['check']}: {blocks['detail']}{skipped}"


def main(argv: list[str]) -> int:
    checks = CHECKS
    if "--checks" in argv:
        at = argv.index("--checks")
        checks = argv[at + 1]
        argv = argv[:at] + argv[at + 2 :]
    specs = [Path(a) for a in argv] or sorted(SPECS.glob("*.yaml"), key=_order)
    print(f"lossctl check --checks {checks or '(default battery)'}; torch threads: {_threads()}")
    print(f"{'case':42} {'want':5} {'got':5} {'wall s':>7} {'×fwd+bwd':>9} {'peak MB':>8}   detail")
    wrong = slow = 0
    for spec in specs:
        function = spec.stem
        want = "PASS" if function in CORRECT else "FAIL"
        result = run_case(spec, checks)
        got, step, detail = summarize(result)
        multiple = f"{result['wall'] / step:9.0f}" if step else f"{'-':>9}"
        mark = "" if got == want else "  <-- WRONG VERDICT"
        wrong += got != want
        slow += result["wall"] > TARGET_SECONDS
        print(
            f"{function:42} {want:5} {got:5} {result['wall']:7.1f} {multiple} {result['peak_mb']:8.0f}   {detail}{mark}"
        )
        sys.stdout.flush()
    print(f"{len(specs) - wrong}/{len(specs)} verdicts right, {slow} over {TARGET_SECONDS:.0f} s")
    return 1 if wrong or slow else 0


def _order(path: Path) -> tuple[int, str]:
    groups = ("MeanSquaredError", "MSE", "Chunked", "Tiled", "Float32", "Slow")
    return next(i for i, g in enumerate((*groups, "")) if path.stem.startswith(g)), path.stem


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print the reliability suite's bad inputs as a Markdown table: input → exit code → first line.

    python benchmarks/bad_inputs_table.py > bad-inputs.md

Runs every input of tests/reliability_cases.py through the CLI (in this process, as the tests do)
and shows what lossctl answers, so the table is generated, never written by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from typer.testing import CliRunner  # noqa: E402

from lossctl.cli import app  # noqa: E402
from tests.conftest import CLI_ENV  # noqa: E402
from tests.reliability_cases import BAD_INPUTS  # noqa: E402


def first_line(stdout: str, stderr: str) -> str:
    """The line a user reads first: the error, else the verdict line of the table."""
    for line in stderr.splitlines():
        if line.strip() and not line.startswith("rerun"):
            return line.strip()
    lines = [line for line in stdout.splitlines() if line.strip()]
    verdicts = [line for line in lines if line.split(" ", 1)[0] in ("OK", "FAILED", "INTERRUPTED")]
    # The report's short summary names each error in one line: `ERROR <case> · <message>`.
    summary = stdout.split("short summary", 1)[1].splitlines() if "short summary" in stdout else []
    errors = [line for line in summary if line.strip().startswith("ERROR ")]
    errors += [line for line in lines if "│ ERROR" in line or "│ setup" in line]
    return (errors or verdicts or lines or ["(no output)"])[0].strip(" │")


def main() -> None:
    runner = CliRunner()
    print("| # | kind | input | exit | first line of output | s |")
    print("|---|---|---|---|---|---|")
    home = os.getcwd()
    for number, bad in enumerate(BAD_INPUTS, 1):
        with tempfile.TemporaryDirectory() as folder:
            argv = bad.materialize(Path(folder))
            os.chdir(folder)
            started = time.perf_counter()
            try:
                result = runner.invoke(app, argv, env={**CLI_ENV, "COLUMNS": "200"}, catch_exceptions=False)
            finally:
                os.chdir(home)
            took = time.perf_counter() - started
            line = first_line(result.stdout, result.stderr).replace(folder, "$TMP").replace("|", "\\|")
            line = " ".join(line.split())[:150]
            mark = "" if result.exit_code == bad.exit_code else f" (expected {bad.exit_code})"
            print(f"| {number} | {bad.kind} | {bad.id} | {result.exit_code}{mark} | `{line}` | {took:.2f} |")


if __name__ == "__main__":
    main()

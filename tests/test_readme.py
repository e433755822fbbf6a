"""Every command the README shows runs as written: each is extracted from the README's shell
blocks, placeholders substituted, and run in a copy of the project. Checks run only `forward`
(plus what the command asks for) and benches time briefly, to stay fast; what is skipped is
listed in SKIPPED with the reason."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import CLI_ENV, REPO
from tests.reliability_cases import _bomb

COMMAND = re.compile(r"^(?:\$ )?(lossctl (?:check|bench|init|list|checks)\b.*|python -m lossctl .*)$")
PLACEHOLDERS = {
    "mypkg.losses:FocalLoss": "lossctl.examples.focal:FocalLoss",
    "mymod.MyLoss": "lossctl.examples.focal.FocalLoss",
    "lossctl list mymod": "lossctl list lossctl.examples.focal",
    "--device cuda": "--device cpu",
    "N=1024,4096,16384": "N=8,16",
    "N=1024,4096": "N=8,16",
}
SKIPPED = {
    "--changed-since": "needs a git history with origin/main (tests/test_changed.py covers it)",
    "lossctl bench configs/ --plot": "draws with matplotlib: slow (tests/test_bench.py covers --plot)",
    "lossctl bench configs/ --threads": "times every bundled spec: slow",
    "lossctl bench  ": "times every bundled spec: slow",
    "--dtype bfloat16": "times the sweep again in bfloat16: slow",
    "lossctl bench mymod.MyLoss": "the same flags as the cross_entropy --save/--compare pair, which runs",
    "--dims N=256,4096": "the sample output: the same flags as the --save command, which runs",
    "distributed/broken/": "spawns rank processes (tests/test_distributed.py covers the distributed examples)",
    "lossctl bench configs/ --no-cache": "times every bundled spec: slow",
    "leak.yaml": "a spec the README only describes (tests/test_reliability.py covers state leaks)",
    "--allow-large": "needs a spec with over 1 GiB of inputs (tests/test_reliability.py covers --allow-large)",
}
BROKEN = ("ClippedGradMSELoss", "SignFlippedMSELoss")
"""The README's failing examples: they run their whole battery, to fail as the README shows."""
EXPECTED_EXIT = {
    "ClippedGradMSELoss": 1,
    "SignFlippedMSELoss": 1,
    "bad.yaml": 2,
    "bomb.yaml": 2,
    "big.yaml": 2,
    "linear_ce_broken.yaml": 1,
    "/dev/full": 2,
    "nonexistent-dir": 2,
    "--fail-slower": (0, 1),
}
BIG_SPEC = "function: tests.fns.Square\ndims: {N: 100000, C: 4096}\nargs: {x: {shape: [N, C]}}\n"
"""The README's spec over the input-memory limit (refused without --allow-large)."""
BAD_SPEC = """function: lossctl.examples.focal.FocalLoss
dims: {N: 6, C: 5}
args:
  logits: {shape: [N, C]}
  target: {shape: [N], dtype: int64, hihg: C}
"""


def readme_commands() -> list[str]:
    commands, fence = [], None
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence == "" and (match := COMMAND.match(line)):
            command = re.sub(r"\s+#.*$", "", match.group(1))
            commands.append(command if command != "lossctl bench" else "lossctl bench  ")
    return commands


def prepared(command: str) -> tuple[list[str], str | None] | str:
    """The argv to run (after `lossctl`) and a file for stdout, or why it is skipped."""
    for marker, why in SKIPPED.items():
        if marker in command:
            return why
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command.replace("python -m lossctl", "lossctl"))[1:]
    stdout_file = None
    if ">" in words:
        stdout_file = words[words.index(">") + 1]
        words = words[: words.index(">")]
    if words and words[0] == "check" and "--checks" not in words and not any(bug in command for bug in BROKEN):
        words += ["--checks", "forward"]
    if words and words[0] == "check":  # in-process: workers take seconds to start under pytest
        if "-j" in words:
            words[words.index("-j") + 1] = "0"
        else:
            words += ["-j", "0"]
    if words and words[0] == "bench":
        words += ["--min-time", "0.005", "--max-time", "0.02"]
    return words, stdout_file


def assert_whole_figures(out: str) -> None:
    """A bench table at 80 columns: within the width, nothing cut, every time with its unit
    (its IQR too)."""
    table = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    assert table and all(len(line) <= 80 for line in table) and "…" not in out, out
    cells = [cell.strip() for line in table if line.startswith("│") for cell in line.strip("│").split("│")]
    for cell in cells:
        if "±" in cell:
            assert re.fullmatch(r"([\d.]+(µs|ms|s) )?±[\d.]+ ?(µs|ms|s)( ~)?", cell), cell
    assert "left out to fit 80 columns:" in out and "· 1 thread ·" in out


def test_the_readme_shows_its_commands():
    commands = readme_commands()
    assert len(commands) >= 25
    assert "lossctl init mymod.MyLoss" in commands and "lossctl check bad.yaml" in commands


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "tests" / "specs", tmp_path / "tests" / "specs")
    (tmp_path / "bad.yaml").write_text(BAD_SPEC, encoding="utf-8")
    (tmp_path / "bomb.yaml").write_text(_bomb(inside_args=False), encoding="utf-8")
    (tmp_path / "big.yaml").write_text(BIG_SPEC, encoding="utf-8")
    # `path/to/losses.py:FocalLoss` as a user would have it: a file, and a spec naming it.
    (tmp_path / "path" / "to").mkdir(parents=True)
    shutil.copy(REPO / "lossctl/examples/focal.py", tmp_path / "path/to/losses.py")
    focal = (REPO / "configs/focal.yaml").read_text(encoding="utf-8")
    (tmp_path / "configs/user_focal.yaml").write_text(
        focal.replace("function: lossctl.examples.focal.FocalLoss", "function: ../path/to/losses.py:FocalLoss")
        + "name: UserFocal\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    from lossctl.cli import app

    ran, skipped = [], []
    for command in readme_commands():
        plan = prepared(command)
        if isinstance(plan, str):
            skipped.append((command, plan))
            continue
        words, stdout_file = plan
        result = CliRunner().invoke(app, words, env={**CLI_ENV, "COLUMNS": "80"}, catch_exceptions=False)
        expected = next((code for marker, code in EXPECTED_EXIT.items() if marker in command), 0)
        codes = expected if isinstance(expected, tuple) else (expected,)
        assert result.exit_code in codes, f"{command}\n{result.stdout}{result.stderr}"
        if stdout_file:
            Path(stdout_file).write_text(result.stdout, encoding="utf-8")
        if words[0] == "bench":
            assert_whole_figures(result.stdout)
        ran.append(command)
    # A new README command runs unless listed; what is skipped stays a minority (each with its reason).
    assert len(ran) >= 30 and len(ran) >= 2 * len(skipped), skipped
    assert (tmp_path / "configs" / "focal_loss.yaml").is_file()  # `lossctl init` wrote it
    assert (tmp_path / "report.xml").is_file() and (tmp_path / "bench.json").is_file()


@pytest.mark.parametrize("line", ["/work/", "/home/", "configs/ce.yaml"])
def test_the_readme_has_no_machine_paths_or_missing_files(line):
    assert line not in (REPO / "README.md").read_text(encoding="utf-8")

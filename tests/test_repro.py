"""--repro: each failure becomes a script that reruns the same check on bit-identical inputs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_repro_scripts_reproduce_the_failure(run_cli, write_spec, tmp_path):
    spec = write_spec(
        """
        specs:
          - name: good
            function: tests.fns.Square
            args: {x: {shape: [4, 3]}}
          - name: flipped
            function: tests.fns.FlippedSign
            seed: 7
            dims: {N: [2, 3], C: 3}
            args: {x: {shape: [N, C], dtype: float32}}
        """
    )
    out = tmp_path / "repro"
    result = run_cli("check", str(spec), "--checks", "forward,gradcheck", "-j", "0", "--repro", str(out), "-f", "json")
    assert result.exit_code == 1
    assert "wrote 2 repro scripts" in result.stderr
    scripts = sorted(p.name for p in out.iterdir())
    assert scripts == ["flipped_N=2__gradcheck.py", "flipped_N=3__gradcheck.py"]
    text = (out / scripts[0]).read_text()
    assert "seed: 7" in text and "N: 2" in text and "dtype: float32" in text
    import json

    original = next(
        c
        for case in json.loads(result.stdout)["cases"]
        if case["case"] == "flipped[N=2]"
        for c in case["checks"]
        if c["check"] == "gradcheck"
    )
    rerun = subprocess.run([sys.executable, str(out / scripts[0])], cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 1
    assert original["detail"] in rerun.stdout  # the same worst element, expected and got values
    assert "sign is flipped" in rerun.stdout

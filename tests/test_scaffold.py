"""scaffold.py through `lossctl init` and `lossctl list`: a new Function checked in two commands."""

from __future__ import annotations

import textwrap

import yaml

LOSSES = """
import torch
from torch.autograd import Function


class MaskedMSE(Function):
    @staticmethod
    def forward(ctx, pred, target, mask, reduction="mean", scale=1.0):
        diff = (pred - target) * mask.unsqueeze(-1)
        ctx.save_for_backward(diff)
        return (diff ** 2).sum() * scale / pred.numel()

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        g = 2 * diff / diff.numel() * grad
        return g, -g, None, None, None


class SmoothedCE(Function):
    @staticmethod
    def forward(ctx, logits, labels, ignore_index=-100, smoothing=0.1):
        return logits.logsumexp(-1).mean()

    @staticmethod
    def backward(ctx, grad):
        return None, None, None, None
"""


def test_init_then_check_in_two_commands(run_cli, tmp_path):
    (tmp_path / "losses.py").write_text(textwrap.dedent(LOSSES))
    result = run_cli("init", "losses.py:MaskedMSE", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "wrote configs/masked_mse.yaml" in result.stdout
    spec = yaml.safe_load((tmp_path / "configs" / "masked_mse.yaml").read_text())
    assert spec["function"] == "../losses.py:MaskedMSE"  # relative to the spec's folder
    assert spec["args"]["mask"]["dtype"] == "bool" and spec["args"]["target"] == {"shape": ["N", "C"]}
    assert spec["args"]["reduction"] == "mean" and spec["args"]["scale"] == 1.0  # plain defaults kept
    checked = run_cli("check", "configs/masked_mse.yaml", "--skip", "double_backward", "-j", "0", cwd=tmp_path)
    assert checked.exit_code == 0, checked.output
    again = run_cli("init", "losses.py:MaskedMSE", cwd=tmp_path)
    assert again.exit_code == 2 and "exists" in again.stderr and "--force" in again.stderr
    assert run_cli("init", "losses.py:MaskedMSE", "--force", cwd=tmp_path).exit_code == 0


def test_init_gives_class_targets_with_the_ignore_index(tmp_path, monkeypatch):
    from lossctl.scaffold import load_target, spec_text

    (tmp_path / "scaffold_losses.py").write_text(textwrap.dedent(LOSSES))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "scaffold_losses", raising=False)
    reference = "scaffold_losses.SmoothedCE"
    spec = yaml.safe_load(spec_text(reference, load_target(reference)))
    assert spec["args"]["labels"] == {
        "shape": ["N"],
        "dtype": "int64",
        "high": "C",
        "special": {"value": -100, "fraction": 0.25},
    }
    assert spec["args"]["ignore_index"] == -100 and spec["args"]["smoothing"] == 0.1


def test_list_shows_what_a_spec_covers(run_cli, tmp_path):
    (tmp_path / "losses.py").write_text(textwrap.dedent(LOSSES))
    assert run_cli("init", "losses.py:SmoothedCE", cwd=tmp_path).exit_code == 0
    result = run_cli("list", "losses.py", cwd=tmp_path)
    assert result.exit_code == 0
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if "losses.py:" in line}
    assert "configs/smoothed_ce.yaml" in rows["losses.py:SmoothedCE"]
    assert "none — lossctl init" in rows["losses.py:MaskedMSE"]
    assert run_cli("list", "nosuch_module_here", cwd=tmp_path).exit_code == 2


def test_init_gives_annotated_plain_parameters_plain_values(tmp_path, monkeypatch):
    """`delta: float` without a default is a number, not a tensor that requires grad (which would make
    backward's missing gradient for it a false alarm)."""
    from lossctl.scaffold import load_target, spec_text

    (tmp_path / "scaffold_huber.py").write_text(
        textwrap.dedent(
            """
            import torch

            class Huber(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x, t, delta: float, steps: int, mode: str):
                    return torch.nn.functional.huber_loss(x, t, delta=delta)

                @staticmethod
                def backward(ctx, g):
                    return g, None, None, None, None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = "scaffold_huber.Huber"
    args = yaml.safe_load(spec_text(reference, load_target(reference)))["args"]
    assert args == {"x": {"shape": ["N", "C"]}, "t": {"shape": ["N", "C"]}, "delta": 1.0, "steps": 1, "mode": "mean"}


def test_init_on_a_module_needing_constructor_arguments_says_so_without_lossctl_frames(run_cli, tmp_path):
    (tmp_path / "mods.py").write_text(
        "from torch import nn\n\n\nclass NeedsArg(nn.Module):\n"
        "    def __init__(self, margin):\n        super().__init__()\n        self.margin = margin\n\n"
        "    def forward(self, pred, target):\n        return (self.margin - pred * target).relu().mean()\n"
    )
    result = run_cli("init", "mods.py:NeedsArg", cwd=tmp_path)
    assert "missing 1 required positional argument: 'margin'" in result.output, result.output
    assert "lossctl/runner.py" not in result.output and "Traceback" not in result.output
    assert "also required, fill in: margin" in (tmp_path / "configs" / "needs_arg.yaml").read_text()


def test_init_guesses_annotated_constructor_arguments(run_cli, tmp_path):
    """Required constructor arguments with an int/float/bool annotation get a first value, so the
    written spec builds the Module and runs; the comment says to check them."""
    (tmp_path / "mods.py").write_text(
        "from torch import nn\n\n\nclass Hinge(nn.Module):\n"
        "    def __init__(self, margin: float, power: int, *, squared: bool):\n"
        "        super().__init__()\n        self.margin, self.power, self.squared = margin, power, squared\n\n"
        "    def forward(self, pred, target):\n"
        "        return (self.margin - pred * target).relu().pow(self.power).mean()\n"
    )
    result = run_cli("init", "mods.py:Hinge", cwd=tmp_path)
    written = (tmp_path / "configs" / "hinge.yaml").read_text()
    assert "module_kwargs: {margin: 1.0, power: 5, squared: false}" in written, written
    assert "guessed from its annotations: check them" in written
    assert "missing" not in result.output, result.output

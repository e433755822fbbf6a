"""Spec inputs with chosen values (`init: choice`, `special:`), so ignore_index is exercised."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lossctl.errors import SpecError
from lossctl.examples.cross_entropy import CrossEntropyLoss
from lossctl.inputs import build_inputs
from lossctl.spec import load_specs

CE = "function: lossctl.examples.cross_entropy.CrossEntropyLoss\ndims: {{N: {n}, C: 5}}\nargs:\n  target: {target}\n"


def targets(n: int, target: str) -> torch.Tensor:
    (spec,) = load_specs(CE.format(n=n, target=target))
    return build_inputs(spec, {"N": n, "C": 5}, seed=0)["target"]


def test_special_sets_a_fraction_at_least_one_never_all():
    special = "{shape: [N], dtype: int64, high: C, special: {value: -100, fraction: 0.25}}"
    assert int((targets(64, special) == -100).sum()) == 16
    assert int((targets(2, special) == -100).sum()) == 1  # round(0.5) would be 0: at least one
    assert int((targets(1, special) == -100).sum()) == 0  # all ignored would make the mean undefined
    assert torch.equal(targets(8, special), targets(8, special))  # seeded


def test_choice_draws_only_the_given_values():
    drawn = targets(200, "{shape: [N], dtype: int64, init: choice, values: [0, 3, -1]}")
    assert set(drawn.tolist()) == {0, 3, -1}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{shape: [N], dtype: int64, high: C, values: [1]}", "`values` applies to init `choice`"),
        ("{shape: [N], dtype: int64, init: choice}", "needs `values:`"),
        ("{shape: [N], dtype: int64, init: choice, values: [1.5]}", "expected an integer"),
        ("{shape: [N], dtype: int64, high: C, special: {value: -100, fraction: 0}}", "fraction in (0, 1]"),
        ("{shape: [N], dtype: int64, high: C, special: {fraction: 0.1}}", "needs `value:`"),
    ],
)
def test_bad_chosen_values_name_the_key(target, message):
    with pytest.raises(SpecError, match=None) as error:
        load_specs(CE.format(n=4, target=target), source="s.yaml")
    assert message in error.value.message and error.value.message.startswith("s.yaml:4: args.target")


class ForgetsIgnoreIndex(CrossEntropyLoss):
    """Counts ignored rows in the mean's denominator in backward: wrong only where targets are
    ignored."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_probs, safe, valid, _ = ctx.saved_tensors
        grad = log_probs.exp()
        grad.scatter_add_(-1, safe.unsqueeze(-1), -torch.ones_like(grad[..., :1]))
        return grad * valid.unsqueeze(-1) * (grad_output / safe.numel()), None, None


def test_the_bundled_ce_spec_catches_a_backward_that_forgets_ignore_index(check_function):
    args = """
    dims: {N: 8, C: 5}
    args:
      logits: {shape: [N, C]}
      target: {shape: [N], dtype: int64, high: C, special: {value: -100, fraction: 0.25}}
    """
    results = check_function("lossctl.examples.cross_entropy.CrossEntropyLoss", args, checks=("gradcheck",))
    assert results["gradcheck"].status.value == "passed"
    wrong = check_function("tests.test_chosen_values.ForgetsIgnoreIndex", args, checks=("gradcheck",))
    assert wrong["gradcheck"].status.value == "failed"
    unexercised = args.replace(", special: {value: -100, fraction: 0.25}", "")
    assert (
        check_function("tests.test_chosen_values.ForgetsIgnoreIndex", unexercised, ("gradcheck",))[
            "gradcheck"
        ].status.value
        == "passed"
    )  # what random targets alone would have said

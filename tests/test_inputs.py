"""inputs.py: every init draws what it promises, and the same seed gives bit-identical tensors."""

from __future__ import annotations

import torch

from lossctl.inputs import build_inputs, build_tensor
from lossctl.spec import Spec, TensorArg, ValueArg

DIMS = {"N": 64, "C": 7}


def make(**kw) -> torch.Tensor:
    return build_tensor(TensorArg(**kw), DIMS, seed=1)


def test_normal_defaults_are_float64_leaves_requiring_grad():
    t = make(shape=("N", "C"))
    assert t.shape == (64, 7) and t.dtype == torch.float64 and t.requires_grad and t.is_leaf
    t = t.detach()
    assert abs(float(t.mean())) < 0.3 and 0.7 < float(t.std()) < 1.3


def test_normal_mean_std():
    t = make(shape=("N", "C"), mean=10.0, std=0.01).detach()
    assert float(t.min()) > 9.9 and float(t.max()) < 10.1


def test_uniform_range():
    t = make(shape=("N",), init="uniform", low=-2.0, high=-1.0).detach()
    assert float(t.min()) >= -2.0 and float(t.max()) < -1.0


def test_randint_with_dim_name_bound():
    t = make(shape=("N",), dtype="int64", init="randint", high="C", requires_grad=False)
    assert t.dtype == torch.int64 and not t.requires_grad
    assert int(t.min()) >= 0 and int(t.max()) < 7
    assert len(t.unique()) > 1


def test_bernoulli_floats_and_bools():
    f = make(shape=("N",), init="bernoulli", p=0.3, requires_grad=False)
    assert set(f.unique().tolist()) <= {0.0, 1.0}
    b = make(shape=("N",), dtype="bool", init="bernoulli", requires_grad=False)
    assert b.dtype == torch.bool


def test_simplex_and_log_simplex():
    s = make(shape=("N", "C"), init="simplex").detach()
    assert bool((s > 0).all())
    torch.testing.assert_close(s.sum(-1), torch.ones(64, dtype=torch.float64))
    ls = make(shape=("N", "C"), init="log_simplex").detach()
    torch.testing.assert_close(ls.logsumexp(-1), torch.zeros(64, dtype=torch.float64))


def test_positive_and_constant():
    assert bool((make(shape=("N",), init="positive") > 0).all())
    c = make(shape=("N",), init="constant", value=2.5).detach()
    assert bool((c == 2.5).all())


def test_low_precision_dtypes_round_the_same_draw():
    f64 = make(shape=("N", "C"))
    f16 = make(shape=("N", "C"), dtype="float16")
    assert f16.dtype == torch.float16
    torch.testing.assert_close(f16.double(), f64.detach(), atol=1e-2, rtol=1e-3)


def spec(**args) -> Spec:
    return Spec(function="x.Y", name="Y", args=args)


def test_same_seed_is_bit_identical_and_per_argument():
    a = build_inputs(spec(x=TensorArg(shape=("N",)), y=TensorArg(shape=("C",))), DIMS, seed=5)
    b = build_inputs(spec(x=TensorArg(shape=("N",)), y=TensorArg(shape=("C",))), DIMS, seed=5)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    # Adding an argument does not change the draws of the others.
    c = build_inputs(
        spec(w=TensorArg(shape=("N",)), x=TensorArg(shape=("N",)), y=TensorArg(shape=("C",))), DIMS, seed=5
    )
    assert torch.equal(a["x"], c["x"])
    d = build_inputs(spec(x=TensorArg(shape=("N",))), DIMS, seed=6)
    assert not torch.equal(a["x"], d["x"])


def test_plain_values_pass_through():
    values = build_inputs(spec(gamma=ValueArg(2.0), mode=ValueArg("mean")), DIMS, seed=0)
    assert values == {"gamma": 2.0, "mode": "mean"}

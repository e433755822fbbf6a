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


def test_large_tensors_draw_in_chunks_reproducibly(monkeypatch):
    """Above CHUNK_ELEMENTS a tensor is drawn chunk by chunk (here a tiny chunk size stands in for
    2^24): the same seed gives the same tensor, on one thread or several, every chunk is its own
    draw (no two chunks repeat), and per-row inits still normalize whole rows."""
    import lossctl.inputs as inputs

    monkeypatch.setattr(inputs, "CHUNK_ELEMENTS", 100)
    dims = {"N": 97, "C": 7}  # 679 elements: 7 chunks, the last one partial
    arg = TensorArg(shape=("N", "C"), mean=1.0, std=2.0)
    one = build_tensor(arg, dims, seed=3)
    torch.set_num_threads(1)
    try:
        serial = build_tensor(arg, dims, seed=3)
    finally:
        torch.set_num_threads(2)
    assert torch.equal(one, serial) and one.dtype == torch.float64 and one.requires_grad
    flat = one.detach().view(-1)
    assert not torch.equal(flat[:100], flat[100:200])
    assert abs(float(flat.mean()) - 1.0) < 0.4 and 1.5 < float(flat.std()) < 2.5
    s = build_tensor(TensorArg(shape=("N", "C"), init="simplex", requires_grad=False), dims, seed=3)
    torch.testing.assert_close(s.sum(-1), torch.ones(97, dtype=torch.float64))
    half = build_tensor(TensorArg(shape=("N", "C"), mean=1.0, std=2.0, dtype="bfloat16"), dims, seed=3)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), one.detach(), atol=0.05, rtol=1e-2)


def test_large_special_values_land_in_every_chunk(monkeypatch):
    """`special:` at scale: every chunk holds at least one special element and none is all special
    (an ignore_index row in every chunk of a chunked loss), and nothing needs a permutation of
    the whole tensor."""
    import lossctl.inputs as inputs

    monkeypatch.setattr(inputs, "CHUNK_ELEMENTS", 100)
    arg = TensorArg(shape=("N",), dtype="int64", init="randint", high=5, special=(-100.0, 0.001), requires_grad=False)
    t = build_tensor(arg, {"N": 1000}, seed=4)
    chunks = t.view(10, 100)
    per_chunk = (chunks == -100).sum(1)
    assert bool((per_chunk >= 1).all()) and bool((per_chunk < 100).all())
    constant = build_tensor(TensorArg(shape=("N",), init="constant", value=0.5), {"N": 1000}, seed=4)
    assert bool((constant == 0.5).all()) and constant.requires_grad

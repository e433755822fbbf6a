"""The bug library (tests/bugs.py): every broken Function is flagged by the check meant to catch it,
with the message that check prints; every correct Function, kinks and all, raises no false alarm.

A broken Function its check misses, or a correct one that raises an alarm, stays in the table as a
strict xfail with the reason: the table records what lossctl catches today, not what it should.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import pytest
from torch.autograd import Function

from lossctl.report import Status
from tests import bugs

F = Status.FAILED

# Specs shared by many rows.
MSE = None  # default inputs: input, target each a float64 [N=5, C=3]
LARGE = "args: {input: {shape: [6400]}, target: {shape: [6400]}}"
BINARY = (
    "dims: {N: 5, C: 3}\n"
    "args: {logits: {shape: [N, C]}, target: {shape: [N, C], init: bernoulli, requires_grad: false}}"
)
CLASSES = "dims: {N: 5, C: 3}\nargs:\n  logits: {shape: [N, C]}\n  target: {shape: [N], dtype: int64, high: C}\n"


def row(bug: str, function: str, spec: str | None, check: str, fragment: str, *, xfail: str | None = None):
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(bug, function, spec, check, F, fragment, id=f"{function}-{check}", marks=marks)


# (bug class, Function in tests.bugs, spec YAML, intended check, expected status, fragment of detail/hint)
TABLE = [
    # wrong scale
    row("scale", "SmoothL1MissingMean", MSE, "gradcheck", "15.000× too large"),
    row("scale", "BCEWithLogitsDoubled", BINARY, "gradcheck", "2.000× too large"),
    row(
        "scale",
        "KLDivBatchmeanOverNumel",
        "dims: {N: 5, C: 3}\nargs: {log_q: {shape: [N, C], init: log_simplex}, "
        "target: {shape: [N, C], init: simplex, requires_grad: false}}",
        "gradcheck",
        "3.000× too small",
    ),
    # ... where gradcheck's fast mode passes (a mean over 6,400 elements): gradient_scaled
    row("scale", "MSEDoubledLarge", LARGE, "gradient_scaled", "2.000× too large"),
    row("scale", "LogCoshHalvedLarge", LARGE, "gradient_scaled", "2.000× too small"),
    # sign flipped
    row("sign", "LogCoshSignFlipped", MSE, "gradcheck", "sign is flipped"),
    row("sign", "BCEWithLogitsLabelMinusPred", BINARY, "gradcheck", "sign is flipped"),
    # grad_output ignored, clipped or normalized
    row("grad_output", "HuberIgnoresGradOutput", MSE, "linearity", "not homogeneous"),
    row(
        "grad_output",
        "PerSampleSoftplusClipsGradOutput",
        "args: {margin: {shape: [5, 3]}}",
        "linearity",
        "not homogeneous",
    ),
    row("grad_output", "CosineLossNormalizesGradOutput", None, "linearity", "not homogeneous"),
    # wrong number of gradients
    row(
        "count",
        "LabelSmoothingCEMissingSlot",
        CLASSES + "  smoothing: 0.1\n",
        "backward",
        "backward returned 2 gradients",
    ),
    row(
        "count",
        "LabelSmoothingCEMissingSlot",
        CLASSES + "  smoothing: 0.1\n",
        "raw_backward",
        "backward returned 2 gradients for 3 forward arguments",
    ),
    row("count", "MSEExtraGradient", MSE, "raw_backward", "backward returned 3 gradients for 2 forward arguments"),
    row("count", "MSEExtraGradient", MSE, "backward", "backward returned 3 gradients"),
    # a gradient for a non-differentiable argument
    row("nondiff", "FocalGradForGamma", CLASSES + "  gamma: 2.0\n", "raw_backward", "non-tensor argument `gamma`"),
    row("nondiff", "CrossEntropyGradForTarget", CLASSES, "raw_backward", "non-differentiable argument `target`"),
    # wrong shape (autograd rejects it) ...
    row("shape", "MSETransposedGrad", MSE, "backward", "is invalid: got [3, 5]"),
    row(
        "shape",
        "SampleWeightedMSEKeepdim",
        "dims: {N: 5, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}, "
        "weight: {shape: [N], init: positive}}",
        "backward",
        "is invalid: got [5, 1]",
    ),
    # ... or the right shape in a transposed layout (autograd accepts it)
    row("layout", "CubeColumnMajorGrad", None, "gradcheck", "transposed"),
    row("layout", "SoftmaxCEColumnMajorGrad", CLASSES, "gradcheck", "transposed"),
    # wrong dtype
    row("dtype", "MSEFloat32Grad", MSE, "raw_backward", "gradient for `input` is float32, the input is float64"),
    row("dtype", "RowMaxLossDefaultDtypeBuffer", None, "raw_backward", "gradient for `scores` is float32"),
    # grad_output modified in place
    row("grad_output_inplace", "ElementwiseSquaredErrorMulInplace", MSE, "grad_output_intact", "in place"),
    row("grad_output_inplace", "BCEDividesGradOutputInplace", BINARY, "grad_output_intact", "in place"),
    # a saved tensor modified in place
    row("saved_inplace", "MSESavesThenSquaresInplace", MSE, "inplace", "and then modified in place by pow_"),
    row(
        "saved_inplace", "BCESubtractsTargetFromSavedProbs", BINARY, "inplace", "(saved for backward) in place by sub_"
    ),
    row(
        "saved_inplace",
        "LogLossClampsInputInplace",
        "args: {probs: {shape: [5, 3], init: simplex}}",
        "inplace",
        "modified in place by clamp_",
    ),
    # nondeterministic backward
    row("nondeterministic", "DropoutMSERedrawsMask", MSE, "determinism", "random state at backward time"),
    row("nondeterministic", "HuberWithGradientNoise", MSE, "determinism", "random state at backward time"),
    # wrong only for non-contiguous inputs
    row("noncontiguous", "RowLogSumExpAsStrided", None, "noncontiguous", "differs with non-contiguous inputs"),
    row("noncontiguous", "FlatMSEView", MSE, "noncontiguous", "raises with non-contiguous inputs"),
    # dim confusion
    row("dims", "ClassMeanSquareWrongDim", None, "gradcheck", "`x`: 15/15 elements wrong"),
    row("dims", "SoftmaxCESoftmaxOverBatch", CLASSES, "gradcheck", "`logits`: 15/15 elements wrong"),
    # wrong only when a dim is 1
    row("size1", "CrossEntropySqueezesLogits", CLASSES, "edge_sizes", "with N=1"),
    row("size1", "PerSampleSquaredNormSqueezedGrad", None, "edge_sizes", "with N=1"),
    row("size1", "SampleVarianceNaNGradAtN1", None, "edge_sizes", "with N=1: the gradient of `x` is nan"),
    # numerically unstable
    row("stability", "NaiveLogSumExpLoss", None, "stability", "output 0 is inf"),
    row("stability", "NaiveLogSigmoidBCE", BINARY, "stability", "output 0 is nan"),
    # float16 overflow
    row(
        "float16",
        "MSESumThenDivide",
        "dtypes: [float16]\nargs: {input: {shape: [400, 256]}, target: {shape: [400, 256]}}",
        "low_precision",
        "float16: out is not finite — overflow",
    ),
    row(
        "float16",
        "NaiveSoftmaxCE",
        "dtypes: [float16]\ndims: {N: 8, C: 10}\n"
        "args: {logits: {shape: [N, C], init: uniform, low: 0, high: 16}, target: {shape: [N], dtype: int64, high: C}}",
        "low_precision",
        "float16: out is not finite — overflow",
    ),
    # silently wrong double backward
    row("double_backward", "CubeDetachedBackward", None, "double_backward", "once_differentiable"),
    row("double_backward", "SoftplusNoGradBackward", BINARY, "double_backward", "once_differentiable"),
    # backward cut from the graph without @once_differentiable: a gradient penalty silently loses its 2nd order
    row("backward_no_grad", "HuberBackwardAllNoGrad", MSE, "double_backward", "the graph is cut at tests/bugs.py:"),
    row("backward_no_grad", "LogCoshBackwardFromDetached", MSE, "double_backward", "@once_differentiable"),
    # float16 overflow with no `dtypes:` in the spec (the default covers float16 and bfloat16)
    row(
        "float16",
        "MSESumThenDivide",
        "args: {input: {shape: [400, 256]}, target: {shape: [400, 256]}}",
        "low_precision",
        "float16: out is not finite — overflow",
    ),
    # wrong jvp
    row("jvp", "SoftplusJvpUsesTanh", None, "forward_ad", "jvp wrong"),
    row("jvp", "MSEJvpIgnoresTargetTangent", MSE, "forward_ad", "jvp wrong"),
    # needs_input_grad slot mix-up
    row("needs_input_grad", "MSENeedsInputGradTypo", MSE, "needs_input_grad", "when only `target` requires grad"),
    row("needs_input_grad", "DotLossFastPathSwapped", None, "needs_input_grad", "changes when only `x` requires grad"),
    # weight ignored in backward
    row(
        "weight",
        "WeightedMSEForgetsWeight",
        "dims: {N: 5, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}, "
        "weight: {shape: [N, C], init: positive, requires_grad: false}}",
        "gradcheck",
        "`input`: 15/15 elements wrong",
    ),
    row(
        "weight",
        "ClassWeightedCEForgetsWeight",
        CLASSES + "  weight: {shape: [C], init: positive, requires_grad: false}\n",
        "gradcheck",
        "`logits`: 15/15 elements wrong",
    ),
]


@pytest.mark.parametrize(("bug", "function", "spec", "check", "status", "fragment"), TABLE)
def test_broken_function_is_caught_by_its_check(check_function, bug, function, spec, check, status, fragment):
    result = check_function(f"tests.bugs.{function}", spec, checks=(check,))[check]
    message = f"{result.status.value}: {result.detail} | hint: {result.hint}"
    assert result.status is status, message
    assert fragment in f"{result.detail}\n{result.hint or ''}", message


@pytest.mark.parametrize("function", ["MSEDoubledLarge", "LogCoshHalvedLarge"])
def test_large_mean_scale_bugs_pass_plain_gradcheck(check_function, function):
    """Why gradient_scaled exists: at 6,400 elements a factor 2 is within gradcheck's atol in fast
    mode. (If gradcheck ever catches these, this test documents a blind spot that has closed.)"""
    results = check_function(f"tests.bugs.{function}", LARGE, checks=("gradcheck", "gradient_scaled"))
    assert results["gradcheck"].status is Status.PASSED, results["gradcheck"].detail
    assert "fast mode" in results["gradcheck"].detail
    assert results["gradient_scaled"].status is F


# --------------------------------------------------------------------------- correct Functions

# (Function, spec YAML, the checks that must PASS, not merely not fail)
CORRECT = [
    pytest.param(
        "BinaryHingeLoss",
        "dims: {N: 6, C: 4}\n"
        "args: {scores: {shape: [N, C]}, labels: {shape: [N, C], init: bernoulli, requires_grad: false}}",
        ("gradcheck", "gradient_scaled", "edge_sizes", "double_backward"),
        id="BinaryHingeLoss",
    ),
    pytest.param(
        "ReluDotLoss",
        "dims: {N: 5, C: 3}\nargs: {x: {shape: [N, C]}, w: {shape: [N, C]}}",
        ("gradcheck", "gradient_scaled", "edge_sizes", "needs_input_grad"),
        id="ReluDotLoss",
    ),
    pytest.param(
        "MeanAbsoluteError",
        "dims: {N: 5, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}}",
        ("gradcheck", "gradient_scaled", "edge_sizes"),
        id="MeanAbsoluteError",
    ),
    pytest.param(
        "Sparsemax",
        "dims: {N: 5, C: 4}\nargs: {z: {shape: [N, C]}}",
        ("gradcheck", "gradient_scaled", "edge_sizes", "linearity", "double_backward"),
        id="Sparsemax",
    ),
    pytest.param(
        "SparsemaxResidualLoss",
        "dims: {N: 5, C: 4}\nargs: {z: {shape: [N, C]}, target: {shape: [N, C], init: simplex, requires_grad: false}}",
        ("inplace", "gradcheck", "edge_sizes"),
        id="SparsemaxResidualLoss",
    ),
    pytest.param(
        "PoissonNLLLogRate",
        "dims: {N: 5, C: 3}\nargs: {log_rate: {shape: [N, C]}, target: {shape: [N, C], init: positive, "
        "requires_grad: false}}",
        ("stability", "gradcheck", "low_precision"),
        id="PoissonNLLLogRate",
    ),
    pytest.param(
        "MovingAverageMSE",
        "dims: {N: 5, C: 3}\nargs: {x: {shape: [N, C]}, target: {shape: [N, C], requires_grad: false}}",
        ("edge_sizes", "gradcheck"),
        id="MovingAverageMSE",
    ),
    pytest.param(
        "LogCoshVmap",
        "dims: {N: 5, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}}",
        ("gradcheck", "vmap"),
        id="LogCoshVmap",
    ),
    pytest.param(
        "BCEWithLogitsJvp",
        "dims: {N: 5, C: 3}\nargs: {logits: {shape: [N, C]}, target: {shape: [N, C], init: uniform}}",
        ("gradcheck", "forward_ad"),
        id="BCEWithLogitsJvp",
    ),
]
CORRECT_NAMES = {p.values[0] for p in CORRECT}


@pytest.mark.parametrize(("function", "spec", "must_pass"), CORRECT)
def test_correct_function_raises_no_false_alarm(check_function, function, spec, must_pass):
    results = check_function(f"tests.bugs.{function}", spec)
    alarms = {k: f"{r.status.value}: {r.detail} | hint: {r.hint}" for k, r in results.items() if r.status.is_problem}
    assert not alarms
    assert {c: results[c].status for c in must_pass} == dict.fromkeys(must_pass, Status.PASSED), {
        c: results[c].detail for c in must_pass
    }


@pytest.mark.parametrize(("function", "spec"), [pytest.param(*p.values[:2], id=p.id) for p in CORRECT])
def test_correct_inputs_keep_away_from_kinks(function, spec):
    """The premise of the no-false-alarm test: no element within 1e-3 of a kink, at the spec's sizes
    and at each size edge_sizes tries (a dim set to 1)."""
    from lossctl.inputs import build_inputs
    from lossctl.spec import load_specs

    (parsed,) = load_specs(f"function: tests.bugs.{function}\n{spec}", source="test.yaml")
    base = {name: sizes[0] for name, sizes in parsed.dims.items()}
    fn = getattr(bugs, function)
    for dims in [base] + [{**base, name: 1} for name in base]:
        values = build_inputs(parsed, dims, seed=parsed.seed)
        assert fn.kink_distance(**values) >= 1e-3, dims


# --------------------------------------------------------------------------- the library itself


def _functions() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(bugs).items()
        if inspect.isclass(obj) and issubclass(obj, Function) and obj.__module__ == bugs.__name__
    }


def test_every_broken_function_is_in_the_table_with_a_one_line_docstring():
    tabled = {p.values[1] for p in TABLE}
    broken = set(_functions()) - CORRECT_NAMES
    assert broken == tabled
    for name, fn in _functions().items():
        doc = fn.__dict__.get("__doc__") or ""
        assert doc and "\n" not in doc.strip(), name


def test_every_bug_class_has_at_least_two_different_functions():
    by_class = defaultdict(set)
    for p in TABLE:
        by_class[p.values[0]].add(p.values[1])
    thin = {bug: names for bug, names in by_class.items() if len(names) < 2}
    assert not thin

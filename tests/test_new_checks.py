"""The bug library, part 2 (tests/bugs_v2.py): each broken Function is flagged by the new check meant
to catch it (undefined_grad, aliased_args, mutation, nondiff_outputs, autocast, compile_agreement)
with the message that check prints; each correct one raises no alarm under any check.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import pytest
from torch.autograd import Function

from lossctl.report import Status
from tests import bugs_v2

F, P, S = Status.FAILED, Status.PASSED, Status.SKIPPED

CLASSES = "dims: {N: 6, C: 4}\nargs:\n  logits: {shape: [N, C]}\n  target: {shape: [N], dtype: int64, high: C}\n"
BINARY = (
    "dims: {N: 5, C: 3}\n"
    "args: {logits: {shape: [N, C]}, target: {shape: [N, C], init: bernoulli, requires_grad: false}}"
)
PAIR = "dims: {N: 5, C: 4}\nargs: {a: {shape: [N, C]}, b: {shape: [N, C]}}"
LINEAR = (
    "dims: {N: 4, H: 3, C: 5}\nargs:\n  hidden: {shape: [N, H]}\n  weight: {shape: [C, H]}\n"
    "  target: {shape: [N], dtype: int64, high: C}\n"
)
SCORES = "args: {scores: {shape: [5, 4]}}"
X = "args: {x: {shape: [5, 3]}}"
RAW = "without bumping its version"


def row(bug: str, function: str, spec: str | None, check: str, fragment: str):
    return pytest.param(bug, function, spec, check, fragment, id=f"{function}-{check}")


# (bug class, Function in tests.bugs_v2, spec YAML, intended check, fragment of detail/hint)
TABLE = [
    # an output the loss does not use gets an undefined grad
    row("undefined_grad", "CEWithZLossNoneCrash", CLASSES, "undefined_grad", "backward raises TypeError"),
    row("undefined_grad", "CEWithZLossNoneCrash", CLASSES, "undefined_grad", "when output 0's grad is undefined"),
    row("undefined_grad", "CEWithZLossDropsOnNone", CLASSES, "undefined_grad", "`logits` gets no gradient"),
    row(
        "undefined_grad",
        "PerSampleSquaredErrorUnitGrad",
        None,
        "undefined_grad",
        "gradient of `input` is not finite when the output's grad_output is zero",
    ),
    # the same tensor for two arguments
    row("aliased", "InfoNCEScalesInPlace", PAIR, "aliased_args", "the same tensor for `a` and `b` changes output 0"),
    row("aliased", "InfoNCEBackwardScalesInPlace", PAIR, "aliased_args", "gets a gradient ≠ ∂a + ∂b"),
    # writes the version counter does not see
    row(
        "mutation",
        "SoftmaxCEOverwritesSavedProbs",
        CLASSES,
        "mutation",
        f"saved for backward, was overwritten after it was saved, {RAW}",
    ),
    row(
        "mutation",
        "BCEBackwardWritesGradIntoLogits",
        BINARY,
        "mutation",
        f"backward overwrote input `logits` in place {RAW}",
    ),
    row(
        "mutation",
        "SoftplusBackwardScalesSavedSigmoid",
        X,
        "mutation",
        f"backward overwrote a (5, 3) float64 intermediate (saved for backward) in place {RAW}",
    ),
    # ... and a raw write into an input during forward, which `inplace` reports (mutation leaves it)
    row("raw_write_forward", "MSEOverwritesInputInForward", None, "inplace", "forward modified input `input` in place"),
    # non-differentiable outputs
    row(
        "nondiff_outputs",
        "CEWithValidCountUnmarked",
        CLASSES,
        "nondiff_outputs",
        "a count, mask or index left unmarked",
    ),
    row(
        "nondiff_outputs",
        "CEWithValidCountMarksLoss",
        CLASSES,
        "nondiff_outputs",
        "did you mark another output instead?",
    ),
    row(
        "nondiff_outputs",
        "TopKHingeBackwardMissesIndexSlot",
        SCORES,
        "nondiff_outputs",
        "backward does not take one grad per output (2 outputs: output 0 float64 differentiable, output 1 int64",
    ),
    # mixed precision
    row(
        "autocast",
        "LinearCrossEntropyNoCustomBwd",
        LINEAR,
        "autocast",
        "backward raises after a forward under autocast(cpu, bfloat16): RuntimeError: expected m1 and m2",
    ),
    row(
        "autocast",
        "LinearCrossEntropyCastNoCustomBwd",
        LINEAR,
        "autocast",
        "backward gives another ∂hidden when called inside autocast(cpu, bfloat16) than outside",
    ),
    row("autocast", "MSEHalfPathForgetsMean", None, "autocast", "∂input differs from float32 by rel err"),
    # eager, torch.compile and torch.func disagree
    row(
        "compile_agreement",
        "SmoothedCETrainingByRequiresGrad",
        CLASSES,
        "compile_agreement",
        "torch.func.vjp gives another output 0 than eager",
    ),
    row(
        "compile_agreement",
        "CEWithZLossOnlyWhenTraining",
        CLASSES,
        "compile_agreement",
        "torch.func.vjp gives another output 0 than eager",
    ),
]


@pytest.mark.parametrize(("bug", "function", "spec", "check", "fragment"), TABLE)
def test_broken_function_is_caught_by_its_new_check(check_function, bug, function, spec, check, fragment):
    result = check_function(f"tests.bugs_v2.{function}", spec, checks=(check,))[check]
    message = f"{result.status.value}: {result.detail} | hint: {result.hint}"
    assert result.status is F, message
    assert fragment in f"{result.detail}\n{result.hint or ''}", message


# --------------------------------------------------------------------------- correct Functions

# (Function, spec YAML, the new checks that must PASS, not merely not fail)
CORRECT = [
    pytest.param("CEWithZLoss", CLASSES, ("undefined_grad", "nondiff_outputs", "autocast"), id="CEWithZLoss"),
    pytest.param(
        "CEWithZLossNoneAware", CLASSES, ("undefined_grad", "nondiff_outputs", "mutation"), id="CEWithZLossNoneAware"
    ),
    pytest.param("InfoNCE", PAIR, ("aliased_args", "autocast", "mutation"), id="InfoNCE"),
    pytest.param(
        "WeightedMSEChecksWeights",
        "dims: {N: 5, C: 3}\nargs: {input: {shape: [N, C]}, target: {shape: [N, C]}, "
        "weight: {shape: [N, C], init: positive}}",
        ("aliased_args",),
        id="WeightedMSEChecksWeights",
    ),
    pytest.param("FusedSoftmaxCE", CLASSES, ("mutation", "autocast"), id="FusedSoftmaxCE"),
    pytest.param("CEWithValidCount", CLASSES, ("nondiff_outputs", "mutation"), id="CEWithValidCount"),
    pytest.param("TopKHingeWithIndices", SCORES, ("nondiff_outputs",), id="TopKHingeWithIndices"),
    pytest.param("LinearCrossEntropyAmp", LINEAR, ("autocast", "mutation"), id="LinearCrossEntropyAmp"),
    pytest.param("LinearCrossEntropyFloat32", LINEAR, ("autocast",), id="LinearCrossEntropyFloat32"),
    pytest.param("LogCoshNewStyle", None, ("aliased_args", "autocast"), id="LogCoshNewStyle"),
]
CORRECT_NAMES = {p.values[0] for p in CORRECT}


@pytest.mark.parametrize(("function", "spec", "must_pass"), CORRECT)
def test_correct_function_raises_no_false_alarm(check_function, function, spec, must_pass):
    results = check_function(f"tests.bugs_v2.{function}", spec)
    alarms = {k: f"{r.status.value}: {r.detail} | hint: {r.hint}" for k, r in results.items() if r.status.is_problem}
    assert not alarms
    assert {c: results[c].status for c in must_pass} == dict.fromkeys(must_pass, P), {
        c: results[c].detail for c in must_pass
    }


def test_compile_agreement_passes_all_three_ways_for_a_new_style_function(check_function):
    result = check_function("tests.bugs_v2.LogCoshNewStyle", None, checks=("compile_agreement",))["compile_agreement"]
    assert result.status is P, result.detail
    assert "eager = torch.compile (rel err" in result.detail and "torch.func.vjp (rel err" in result.detail


def test_compile_agreement_passes_keyword_tensors_and_skips_only_torch_func_without_setup_context(check_function):
    """A keyword-only tensor reaches both legs (the `compile` check once dropped it), and a
    Function without setup_context skips the torch.func leg alone, saying why."""
    spec = "args: {x: {shape: [4, 3]}, weight: {shape: [4, 3], requires_grad: false}}"
    result = check_function("tests.fns.weighted_by_keyword", spec, checks=("compile_agreement",))["compile_agreement"]
    assert result.status is P, result.detail
    assert "eager = torch.compile (rel err" in result.detail
    assert "torch.func.vjp skipped: the Function has no setup_context" in result.detail


def test_new_checks_that_need_several_outputs_or_arguments_say_so(check_function):
    results = check_function("tests.fns.Square", None, checks=("undefined_grad", "aliased_args", "nondiff_outputs"))
    assert {k: r.status for k, r in results.items()} == {"undefined_grad": P, "aliased_args": S, "nondiff_outputs": S}
    assert "a zero grad_output gives a finite gradient (one differentiable output)" in results["undefined_grad"].detail
    assert "no two arguments that require grad share a shape and dtype" in results["aliased_args"].detail
    assert "one output" in results["nondiff_outputs"].detail


def test_autocast_skips_a_function_that_refuses_the_low_dtype_with_the_way_to_opt_in(check_function):
    result = check_function("tests.fns.Float32Only", "args: {x: {shape: [3], dtype: float32}}", checks=("autocast",))
    assert result["autocast"].status is S, result["autocast"].detail
    assert "cast_inputs=torch.float32" in result["autocast"].detail


def test_mutation_leaves_visible_inplace_ops_to_the_inplace_check(check_function):
    """One write, one report: a saved tensor changed by a tracked in-place op is `inplace`'s."""
    results = check_function("tests.bugs.MSESavesThenSquaresInplace", None, checks=("inplace", "mutation"))
    assert results["inplace"].status is F
    assert results["mutation"].status is P, results["mutation"].detail


def test_mutation_names_no_raw_write_in_a_function_that_computes_its_gradient_in_forward(check_function):
    """A Liger-style Function that writes the gradient into its softmax buffer before saving it."""
    result = check_function("tests.bugs_v2.FusedSoftmaxCE", CLASSES, checks=("mutation",))["mutation"]
    assert result.status is P
    assert "1 saved tensor" in result.detail


# --------------------------------------------------------------------------- the library itself


def _functions() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(bugs_v2).items()
        if inspect.isclass(obj)
        and issubclass(obj, Function)
        and obj.__module__ == bugs_v2.__name__
        and not name.startswith("_")
    }


def test_every_broken_function_is_in_the_table_with_a_one_line_docstring():
    tabled = {p.values[1] for p in TABLE}
    assert set(_functions()) - CORRECT_NAMES == tabled
    for name, fn in _functions().items():
        doc = fn.__dict__.get("__doc__") or ""
        assert doc and "\n" not in doc.strip(), name


def test_every_new_check_has_at_least_two_broken_functions():
    by_check = defaultdict(set)
    for p in TABLE:
        by_check[p.values[3]].add(p.values[1])
    new = ("undefined_grad", "aliased_args", "mutation", "nondiff_outputs", "autocast", "compile_agreement")
    assert {c: len(by_check[c]) >= 2 for c in new} == dict.fromkeys(new, True)


def test_mutation_leaves_a_raw_write_into_an_input_during_forward_to_inplace(check_function):
    """Forward saves `input` and then overwrites it through .data: `inplace` sees the input change
    (it compares values), so `mutation` does not report the same write again."""
    results = check_function("tests.bugs_v2.MSEOverwritesInputInForward", None, checks=("inplace", "mutation"))
    assert results["inplace"].status is F
    assert "forward modified input `input` in place" in results["inplace"].detail
    assert results["mutation"].status is P, results["mutation"].detail


@pytest.mark.parametrize("function", ["DropoutMSERedrawsMask", "HuberWithGradientNoise"])
def test_a_backward_that_draws_random_numbers_is_left_to_determinism(check_function, function):
    """The new checks compare two runs with one random state, so noise drawn in backward (the bug
    `determinism` reports) does not read as aliasing, an undefined-grad or an autocast difference."""
    new = ("undefined_grad", "aliased_args", "mutation", "nondiff_outputs", "autocast")
    results = check_function(f"tests.bugs.{function}", None, checks=("determinism", *new))
    assert results["determinism"].status is F
    assert {c: results[c].status for c in new if results[c].status.is_problem} == {}

"""spec.py: valid specs parse into dataclasses; every kind of invalid spec names file, line and key."""

from __future__ import annotations

import textwrap

import pytest

from lossctl.errors import SpecError
from lossctl.spec import TensorArg, Tolerance, ValueArg, load_spec_file, load_specs, sweep


def parse(text: str, source: str = "s.yaml"):
    return load_specs(textwrap.dedent(text).lstrip(), source=source)


FOCAL = """
function: lossctl.examples.focal.FocalLoss
seed: 3
dims: {N: 6, C: 5}
args:
  logits: {shape: [N, C]}
  target: {shape: [N], dtype: int64, high: C}
  gamma: 2.0
tolerance: {eps: 1e-6, atol: 1e-5, rtol: 1e-3}
"""


def test_full_spec_parses_with_defaults_filled():
    (spec,) = parse(FOCAL)
    assert spec.function == "lossctl.examples.focal.FocalLoss"
    assert spec.name == "FocalLoss"
    assert spec.seed == 3
    assert spec.dims == {"N": (6,), "C": (5,)}
    assert spec.args["logits"] == TensorArg(shape=("N", "C"))
    assert spec.args["target"] == TensorArg(shape=("N",), dtype="int64", init="randint", requires_grad=False, high="C")
    assert spec.args["gamma"] == ValueArg(2.0)
    # YAML 1.1 reads 1e-6 as a string: it must still be a number here.
    assert spec.tolerance == Tolerance(eps=1e-6, atol=1e-5, rtol=1e-3)
    assert list(spec.args) == ["logits", "target", "gamma"]


def test_specs_list_and_names():
    specs = parse(
        """
        specs:
          - name: small
            function: a.B
            args: {x: {shape: [2]}}
          - function: a.C
            args: {x: {shape: [3]}}
        """
    )
    assert [s.name for s in specs] == ["small", "C"]
    assert specs[0].line == 2


def test_sweep_is_the_cartesian_product_in_dims_order():
    (spec,) = parse(
        """
        function: a.B
        dims: {N: [1, 4], C: 3, K: [2, 5]}
        args: {x: {shape: [N, C, K]}}
        """
    )
    points = sweep(spec)
    assert [dict(p.dims) for p in points] == [
        {"N": 1, "C": 3, "K": 2},
        {"N": 1, "C": 3, "K": 5},
        {"N": 4, "C": 3, "K": 2},
        {"N": 4, "C": 3, "K": 5},
    ]
    assert points[1].label() == "N=1,K=5"


def test_dtype_aliases_and_bool_defaults():
    (spec,) = parse(
        """
        function: a.B
        args:
          x: {shape: [2], dtype: torch.half}
          m: {shape: [2], dtype: bool}
          y: {shape: [], dtype: double, requires_grad: false}
        """
    )
    assert spec.args["x"].dtype == "float16"
    assert spec.args["m"] == TensorArg(shape=(2,), dtype="bool", init="bernoulli", requires_grad=False)
    assert spec.args["y"].requires_grad is False and spec.args["y"].shape == ()


def test_checks_dtypes_and_reference():
    (spec,) = parse(
        """
        function: a.B
        reference: torch.nn.functional.cross_entropy
        reference_kwargs: {reduction: sum}
        dtypes: [float32, torch.bfloat16, half]
        dims: {N: 4, C: 3}
        tolerance: {nondet_tol: 1e-7}
        checks:
          compile: true
          vmap: false
          edge_sizes: {exclude_dims: [C]}
          stability: {exclude_args: [x]}
          low_precision: {factor: 64}
          reference: {factor: 3, floor: 4}
        args: {x: {shape: [N, C]}}
        """
    )
    assert spec.reference == "torch.nn.functional.cross_entropy"
    assert spec.reference_kwargs == {"reduction": "sum"}
    assert spec.dtypes == ("float32", "bfloat16", "float16")
    assert spec.tolerance.nondet_tol == 1e-7
    assert spec.checks == {
        "compile": True,
        "vmap": False,
        "edge_sizes": True,
        "stability": True,
        "low_precision": True,
        "reference": True,
    }
    assert spec.check_options["edge_sizes"] == {"exclude_dims": ("C",)}
    assert spec.check_options["reference"] == {"factor": 3.0, "floor": 4.0}


def test_missing_args_means_default_inputs():
    (spec,) = parse("function: a.B\n")
    assert not spec.args_given


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        ("function: a.B\nargz: {}\n", "argz", 2, "unknown key"),
        (
            "function: a.B\ndims: {N: 2}\nargs:\n  t: {shape: [N], dtype: int64, hihg: 3}\n",
            "args.t.hihg",
            4,
            "did you mean `high`",
        ),
        ("function: a.B\ntolerance: {atoll: 1}\n", "tolerance.atoll", 2, "unknown key"),
        ("function: a.B\nargs:\n  x: {shape: [M]}\n", "args.x.shape[0]", 3, "undefined dim `M`"),
        ("function: a.B\nargs:\n  x: {shape: 3}\n", "args.x.shape", 3, "expected a list"),
        ("function: a.B\nargs:\n  x: {dtype: float32}\n", "args.x", 3, "needs `shape:`"),
        ("function: a.B\nargs:\n  x: {shape: [2], dtype: float33}\n", "args.x.dtype", 3, "float32"),
        (
            "function: a.B\nargs:\n  t: {shape: [2], dtype: int64}\n",
            "args.t.high",
            3,
            "randint needs `high`",
        ),
        (
            "function: a.B\nargs:\n  t: {shape: [2], dtype: int64, low: 5, high: 5}\n",
            "args.t.high",
            3,
            "high > low",
        ),
        (
            "function: a.B\nargs:\n  t: {shape: [2], init: uniform, low: 1, high: 0}\n",
            "args.t.high",
            3,
            "high > low",
        ),
        ("function: a.B\nargs:\n  t: {shape: [2], init: bernoulli, p: 1.5}\n", "args.t.p", 3, "[0, 1]"),
        (
            "function: a.B\nargs:\n  t: {shape: [2], std: 2, init: uniform}\n",
            "args.t.std",
            3,
            "does not apply",
        ),
        ("function: a.B\nargs:\n  t: {shape: [2], std: -1}\n", "args.t.std", 3, "> 0"),
        (
            "function: a.B\nargs:\n  t: {shape: [2], dtype: int64, high: 3, requires_grad: true}\n",
            "args.t.requires_grad",
            3,
            "only floating",
        ),
        ("function: a.B\nargs:\n  t: {shape: [2], init: gauss}\n", "args.t.init", 3, "unknown init"),
        ("function: a.B\nargs:\n  t: {shape: [], init: simplex}\n", "args.t.shape", 3, "at least one dim"),
        ("function: a.B\ndims: {N: 0}\n", "dims.N", 2, ">= 1"),
        ("function: a.B\ndims: {N: []}\n", "dims.N", 2, "at least one size"),
        ("function: a.B\ndims: {N: [2, 2]}\n", "dims.N", 2, "appears twice"),
        ("function: a.B\nseed: -1\n", "seed", 2, ">= 0"),
        ("function: a.B\nseed: abc\n", "seed", 2, "expected an integer"),
        ("function: [a]\n", "function", 1, "dotted path"),
        ("seed: 1\n", None, 1, "missing `function:`"),
        ("function: a.B\nfunction: a.C\n", "function", 2, "appears twice"),
        ("function: a.B\ntolerance: {eps: 0}\n", "tolerance.eps", 2, "> 0"),
        ("function: a.B\nmodule_kwargs: [1]\n", "module_kwargs", 2, "mapping"),
        ("specs: []\n", "specs", 1, "non-empty list"),
        ("function: a.B\nchecks: {gradchek: true}\n", "checks.gradchek", 2, "did you mean `gradcheck`"),
        ("function: a.B\nchecks: {vmap: {x: 1}}\n", "checks.vmap", 2, "expected true or false"),
        (
            "function: a.B\nchecks: {edge_sizes: {exclude_dims: [M]}}\n",
            "checks.edge_sizes.exclude_dims[0]",
            2,
            "unknown dim",
        ),
        ("function: a.B\nchecks: {edge_sizes: {keep: [M]}}\n", "checks.edge_sizes.keep", 2, "unknown key"),
        ("function: a.B\nchecks: {low_precision: {factor: 0}}\n", "checks.low_precision.factor", 2, "> 0"),
        ("function: a.B\ndtypes: [int64]\n", "dtypes[0]", 2, "floating dtype"),
        ("function: a.B\ndtypes: []\n", "dtypes", 2, "non-empty list"),
        ("function: a.B\nreference: 3\n", "reference", 2, "dotted path"),
        ("function: a.B\nreference_kwargs: {a: 1}\n", "reference_kwargs", 2, "without `reference:`"),
        ("specs:\n  - function: a.B\nseed: 1\n", "seed", 3, "nothing else"),
        (
            "specs:\n  - {function: a.B, name: x}\n  - {function: a.C, name: x}\n",
            "specs[1].name",
            3,
            "used by spec 0",
        ),
    ],
)
def test_invalid_specs_name_file_line_and_key(text, key, line, words):
    with pytest.raises(SpecError) as info:
        parse(text)
    error = info.value
    assert error.source == "s.yaml"
    assert error.key == key
    assert error.line == line
    assert words in str(error)
    assert str(error).startswith(f"s.yaml:{line}: ")


def test_invalid_yaml_and_non_mapping():
    with pytest.raises(SpecError, match=r"s.yaml:3: invalid YAML"):
        parse("function: a.B\nargs: {x: [\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        parse("- 1\n- 2\n")
    with pytest.raises(SpecError, match="empty"):
        parse("")


def test_load_spec_file_missing(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec_file(tmp_path / "nope.yaml")


def test_bundled_configs_are_valid():
    from pathlib import Path

    from lossctl.spec import find_spec_files

    files = find_spec_files(Path(__file__).parent.parent / "configs")
    assert files, "configs/ holds the bundled specs"
    for file in files:
        assert load_spec_file(file)

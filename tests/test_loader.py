"""loader.py and target.py: every TARGET form loads, every failure says what was tried and the fix."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lossctl.errors import BindError, LoadError
from lossctl.loader import load_object, parse_reference
from lossctl.target import TargetKind, classify
from tests import fns


def load(text: str, **kw):
    obj, _ = load_object(text, **kw)
    return classify(obj, text)


@pytest.mark.parametrize("text", ["tests.fns.Square", "tests.fns:Square"])
def test_dotted_and_colon_forms(text):
    target = load(text)
    assert target.obj is fns.Square and target.kind is TargetKind.FUNCTION


def test_file_form_relative_to_base_dir(tmp_path):
    (tmp_path / "mylosses.py").write_text(
        textwrap.dedent(
            """
            import torch
            class Twice(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    return 2 * x
                @staticmethod
                def backward(ctx, g):
                    return 2 * g
            """
        )
    )
    target = load("mylosses.py:Twice", base_dir=tmp_path)
    assert target.obj.__name__ == "Twice" and target.kind is TargetKind.FUNCTION
    # Loading the same file twice gives the same class.
    assert load(str(tmp_path / "mylosses.py") + ":Twice").obj is target.obj


def test_current_directory_is_importable(tmp_path, monkeypatch):
    (tmp_path / "cwd_module_for_test.py").write_text("def loss(x):\n    return x.sum()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    assert load("cwd_module_for_test.loss").kind is TargetKind.CALLABLE


def test_reference_keys_match_across_forms():
    assert parse_reference("a.b:C").key() == parse_reference("a.b.C").key()
    base = Path("/x")
    assert parse_reference("f.py:C", base_dir=base).key() == parse_reference("/x/f.py:C").key()


def test_module_not_found_names_what_was_tried():
    with pytest.raises(LoadError) as info:
        load_object("nosuchpkg.losses.Loss")
    message = str(info.value)
    assert "tried nosuchpkg.losses, nosuchpkg" in message
    assert "No module named 'nosuchpkg'" in message
    assert "current directory is importable" in message


def test_missing_attribute_lists_function_subclasses():
    with pytest.raises(LoadError) as info:
        load_object("tests.fns.Sqare")
    assert "has no attribute `Sqare`" in info.value.message
    assert "Square" in info.value.hint and "ScaledSum" in info.value.hint
    assert "_MeanSquare" not in info.value.hint


def test_user_module_that_raises_shows_its_traceback(tmp_path):
    (tmp_path / "exploding.py").write_text("import math\n\nraise ValueError('bad config in module')\n")
    with pytest.raises(LoadError) as info:
        load_object("exploding.py:X", base_dir=tmp_path)
    assert "raised ValueError: bad config in module" in info.value.message
    assert 'exploding.py", line 3' in info.value.details
    assert "lossctl/loader.py" not in info.value.details


def test_user_module_missing_dependency_is_not_reported_as_not_found(tmp_path, monkeypatch):
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LoadError) as info:
        load_object("needs_dep.Loss")
    assert "importing `needs_dep` raised ModuleNotFoundError" in info.value.message
    assert info.value.details


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tests.fns.NOT_CALLABLE", "is an int (42), not a Function"),
        ("tests.fns.NotAFunction", "not a torch.autograd.Function or nn.Module subclass"),
        ("tests.fns", "is a module, not a Function"),
        ("losses.py", "names no object"),
        ("a b", "not a dotted path"),
        ("Square", "needs a module and a name"),
    ],
)
def test_wrong_kinds_of_object(text, words):
    with pytest.raises(LoadError, match=re.escape(words)):
        obj, _ = load_object(text)
        classify(obj, text)


def test_missing_file():
    with pytest.raises(LoadError, match="no such file"):
        load_object("does/not/exist.py:X")


# --------------------------------------------------------------------------- signatures


def test_staticmethod_classmethod_and_new_style_signatures():
    assert [p.name for p in load("tests.fns.Square").parameters] == ["x"]
    assert [p.name for p in load("tests.fns.ScaledSum").parameters] == ["x", "w", "scale"]
    assert [p.name for p in load("tests.fns.NewStyleMul").parameters] == ["x", "y"]
    assert [p.name for p in load("tests.fns.SquareModule").parameters] == ["x"]
    assert [p.name for p in load("tests.fns.square_loss").parameters] == ["x", "target"]


def test_bind_orders_by_signature_and_fills_defaults():
    target = load("tests.fns.ScaledSum")
    positional, keyword = target.bind({"w": "W", "x": "X"})
    assert positional == [("x", "X"), ("w", "W"), ("scale", 1.0)] and keyword == {}


def test_bind_typo_suggests_and_shows_signature():
    with pytest.raises(BindError) as info:
        load("tests.fns.ScaledSum").bind({"x": 1, "ww": 2})
    message = info.value.message
    assert "args.ww" in message and "Did you mean `w`?" in message
    assert "ScaledSum.forward(ctx, x, w, scale=1.0)" in message


def test_bind_missing_required():
    with pytest.raises(BindError, match="needs `w`"):
        load("tests.fns.ScaledSum").bind({"x": 1})


def test_required_parameters_for_default_inputs():
    assert load("tests.fns.ScaledSum").required_parameters() == ["x", "w"]


def test_source_location_points_at_backward():
    file, line = load("tests.fns.Square").source_location()
    assert file.endswith("fns.py")
    source = Path(file).read_text().splitlines()
    assert "def backward" in source[line - 1] or "staticmethod" in source[line - 1]

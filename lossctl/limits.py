"""Bounds on what a spec may ask for: file size, YAML expansion and depth, text, numbers, input memory."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Any

import yaml

MAX_SPEC_BYTES = 1 << 20
"""A spec file larger than 1 MiB is refused unread: real specs are a few hundred bytes."""
MAX_YAML_NODES = 100_000
"""Nodes a document may hold once every alias is expanded (a "billion laughs" bomb holds 10⁹)."""
MAX_YAML_DEPTH = 64
"""Nesting levels of lists and mappings; deeper documents are refused before Python's recursion
limit is near."""
MAX_DIM = 1 << 40
"""The largest single size or dim; the product of a tensor's sizes must also stay below MAX_ELEMENTS."""
MAX_ELEMENTS = 1 << 62
MAX_INPUT_BYTES = 1 << 30
"""Input bytes a case may ask for without --allow-large (1 GiB: checks hold several copies)."""
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)
INT_RANGES = {
    "int64": INT64_RANGE,
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "bool": (0, 1),
}
"""The values each integer dtype holds (randint's `high` is exclusive: it may be one above)."""
ITEM_BYTES = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}

# Characters that rewrite a terminal or hide text: C0/C1 controls (but tab and newlines), the
# byte-order mark, and the bidirectional overrides of "trojan source".
_ALLOWED_CONTROLS = frozenset("\t\n\r")
_HIDDEN = frozenset("\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class YamlLimitError(yaml.YAMLError):
    """A document over a bound; `line` is 1-based where known."""

    def __init__(self, problem: str, line: int | None):
        super().__init__(problem)
        self.problem = problem
        self.line = line


def bad_character(text: str) -> str | None:
    """A description of the first character a spec string may not hold, or None."""
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return f"a lone surrogate (U+{code:04X}), which no output encoding can write"
        if char in _HIDDEN or (unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS):
            return f"the control character U+{code:04X}, which could rewrite or hide terminal output"
    return None


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that sizes every node as it is composed: aliases count as often as they are
    used, so an alias bomb is refused after reading a few lines instead of expanding forever."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self._sizes:
                raise YamlLimitError(f"alias *{event.anchor} refers to itself", event.start_mark.line + 1)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            mark = self.peek_event().start_mark
            raise YamlLimitError(f"the YAML is nested deeper than {MAX_YAML_DEPTH} levels", mark.line + 1)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = size = self._size(node)
        if size > MAX_YAML_NODES:
            raise YamlLimitError(
                f"the YAML expands to more than {MAX_YAML_NODES:,} nodes (aliases count each time they are used)",
                node.start_mark.line + 1,
            )
        return node

    def _size(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode):
            problem = bad_character(node.value)
            if problem is not None:
                raise YamlLimitError(f"a string holds {problem}", node.start_mark.line + 1)
            return 1
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._sizes[id(item)] for item in node.value)
        return 1 + sum(self._sizes[id(key)] + self._sizes[id(value)] for key, value in node.value)


def compose_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data of one YAML document, within the bounds
    above; raises yaml.YAMLError (YamlLimitError for a bound)."""
    if text.startswith("\ufeff"):
        text = text[1:]  # editors on Windows save UTF-8 with a byte-order mark: harmless here
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def tensor_elements(shape: Iterable[int]) -> int:
    return math.prod(shape)


def format_bytes(count: int) -> str:
    """`8,000,000,000 bytes (7.5 GiB)`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            short = f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
            break
        value /= 1024
    return f"{count:,} bytes ({short})"

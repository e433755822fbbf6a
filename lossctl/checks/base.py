"""What a check is: a stable id, a one-line description, and a function of a case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lossctl.case import Case
from lossctl.report import Outcome


@dataclass(frozen=True)
class Check:
    id: str
    description: str
    run: Callable[[Case], Outcome]
    default: bool = True
    """Whether it runs when no --checks are given."""


class Skip(Exception):
    """Raised inside a check to report SKIPPED with a reason."""

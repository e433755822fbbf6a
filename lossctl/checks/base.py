"""What a check is: a stable id, a one-line description, and a function of a case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lossctl.case import Case
from lossctl.catalogue import info
from lossctl.report import Outcome


@dataclass(frozen=True)
class Check:
    id: str
    description: str
    run: Callable[[Case], Outcome]
    default: bool = True
    """Whether it runs when no --checks are given."""

    @classmethod
    def of(cls, check_id: str, run: Callable[[Case], Outcome]) -> Check:
        """A check whose description and default come from the catalogue (lossctl/catalogue.py)."""
        entry = info(check_id)
        return cls(check_id, entry.description, run, entry.default)


class Skip(Exception):
    """Raised inside a check to report SKIPPED with a reason."""

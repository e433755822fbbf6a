"""lossctl: check that a custom torch.autograd.Function is right, say why not, and time it.

    import lossctl
    report = lossctl.check("mypkg.losses.FocalLoss")          # -> Report
    lossctl.assert_gradients(FocalLoss, logits, target, 2.0)   # raises AssertionError on failure

Importing lossctl does not import torch; the API functions do, on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"check", "assert_gradients", "failure_text", "inputs_for"}
_REPORT = {"Report", "Status", "CaseResult", "CheckResult"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from lossctl import api

        return getattr(api, name)
    if name in _REPORT:
        from lossctl import report

        return getattr(report, name)
    raise AttributeError(f"module 'lossctl' has no attribute {name!r}")


__all__ = ["CaseResult", "CheckResult", "Report", "Status", "__version__", "assert_gradients", "check"]

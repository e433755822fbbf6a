"""`gradcheck`: torch.autograd.gradcheck on float64 copies, with a diagnosis when it fails (the
comparison and its diagnosis live in lossctl.checks.common, shared with edge_sizes)."""

from __future__ import annotations

from lossctl.checks.base import Check
from lossctl.checks.common import gradcheck_outcome

check_gradcheck = gradcheck_outcome

CHECK = Check.of("gradcheck", check_gradcheck)

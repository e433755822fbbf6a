"""A library of deliberately broken Functions, one realistic bug each, grouped by the check meant to
catch it (tests/test_bug_library.py holds the table), and correct Functions with kinks or tricky
structure (ReLU, sparsemax, abs, vmap, jvp) that must raise no false alarm.

Each broken Function's docstring names its bug in one line. Forward is always right unless the bug
is in forward; each backward is right except for the one bug.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

# =========================================================================== broken
# --------------------------------------------------------------- wrong scale → gradcheck


class SmoothL1MissingMean(Function):
    """Huber (smooth L1) mean loss whose backward forgets the 1/numel of the mean."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        quad = 0.5 * diff * diff
        lin = diff.abs() - 0.5
        return torch.where(diff.abs() < 1, quad, lin).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * diff.clamp(-1, 1)  # bug: no / diff.numel()
        return g, -g


class BCEWithLogitsDoubled(Function):
    """Binary cross-entropy with logits whose backward carries an extra factor 2 (copied from MSE)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        return grad * 2 * (torch.sigmoid(logits) - target) / logits.numel(), None  # bug: factor 2


class KLDivBatchmeanOverNumel(Function):
    """KL(target ‖ q) with reduction 'batchmean' whose backward divides by N·C instead of N."""

    @staticmethod
    def forward(ctx: Any, log_q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(target)
        ctx.batch = log_q.shape[0]
        return (target * (target.log() - log_q)).sum() / log_q.shape[0]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (target,) = ctx.saved_tensors
        return -grad * target / target.numel(), None  # bug: should be / ctx.batch


class MSEDoubledLarge(Function):
    """Mean squared error with an extra factor 2 in backward: tiny elements at large N hide it from gradcheck."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 4 * diff / diff.numel()  # bug: 4 instead of 2
        return g, -g


class LogCoshHalvedLarge(Function):
    """Mean log-cosh loss whose backward halves the gradient (a stray 0.5): hidden from gradcheck at large N."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        a = diff.abs()
        return (a + F.softplus(-2 * a) - math.log(2)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = 0.5 * grad * torch.tanh(diff) / diff.numel()  # bug: 0.5
        return g, -g


# --------------------------------------------------------------- sign flipped → gradcheck


class LogCoshSignFlipped(Function):
    """Mean log-cosh loss whose backward returns −tanh(d) (the sign is flipped)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        a = diff.abs()
        return (a + F.softplus(-2 * a) - math.log(2)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * torch.tanh(diff) / diff.numel()
        return -g, g  # bug: swapped signs


class BCEWithLogitsLabelMinusPred(Function):
    """BCE with logits whose backward uses target − sigmoid(x) instead of sigmoid(x) − target."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        return grad * (target - torch.sigmoid(logits)) / logits.numel(), None  # bug: sign


# --------------------------------------------------------------- grad_output ignored / clipped → linearity


class HuberIgnoresGradOutput(Function):
    """Huber mean loss whose backward returns the gradient as if grad_output were 1."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return torch.where(diff.abs() < 1, 0.5 * diff * diff, diff.abs() - 0.5).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = diff.clamp(-1, 1) / diff.numel()  # bug: grad is never used
        return g, -g


class PerSampleSoftplusClipsGradOutput(Function):
    """Per-sample softplus loss (reduction='none') whose backward clips each grad_output to [−1, 1]."""

    @staticmethod
    def forward(ctx: Any, margin: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(margin)
        return F.softplus(-margin).sum(-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (margin,) = ctx.saved_tensors
        return -grad.clamp(-1, 1).unsqueeze(-1) * torch.sigmoid(-margin)  # bug: clamp


class CosineLossNormalizesGradOutput(Function):
    """1 − cosine similarity whose backward uses grad_output / |grad_output| (only its sign)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nx, ny = x.norm(), y.norm()
        ctx.save_for_backward(x, y, nx, ny)
        return 1 - (x * y).sum() / (nx * ny)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, nx, ny = ctx.saved_tensors
        cos = (x * y).sum() / (nx * ny)
        unit = grad / grad.abs().clamp_min(1e-12)  # bug: "normalizes" grad_output
        gx = -(y / (nx * ny) - cos * x / (nx * nx))
        gy = -(x / (nx * ny) - cos * y / (ny * ny))
        return unit * gx, unit * gy


# --------------------------------------------------------------- number of gradients → backward / raw_backward


class LabelSmoothingCEMissingSlot(Function):
    """Label-smoothing cross-entropy that returns 2 gradients for its 3 arguments (forgets smoothing's None)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        c = logits.shape[-1]
        q = torch.full_like(logp, smoothing / c).scatter(-1, target.unsqueeze(-1), 1 - smoothing + smoothing / c)
        ctx.save_for_backward(logp, q)
        return -(q * logp).sum(-1).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, q = ctx.saved_tensors
        return grad * (logp.exp() - q) / logp.shape[0], None  # bug: no slot for smoothing


class MSEExtraGradient(Function):
    """MSE that returns 3 gradients for its 2 arguments (a leftover weight gradient)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff / diff.numel()
        return g, -g, (diff * diff).mean() * grad  # bug: a third gradient


# --------------------------------------------------------------- gradient for a non-differentiable arg → raw_backward


class FocalGradForGamma(Function):
    """Focal loss whose backward also returns d loss / d gamma for the plain-float gamma."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        logpt = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        pt = logpt.exp()
        ctx.save_for_backward(logp, target, logpt)
        ctx.gamma = gamma
        return (-((1 - pt) ** gamma) * logpt).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        logp, target, logpt = ctx.saved_tensors
        gamma, n = ctx.gamma, logp.shape[0]
        pt = logpt.exp()
        one_m = 1 - pt
        d_pt = gamma * one_m ** (gamma - 1) * logpt - one_m**gamma / pt
        onehot = torch.zeros_like(logp).scatter(-1, target.unsqueeze(-1), 1.0)
        g = grad * (d_pt * pt).unsqueeze(-1) * (onehot - logp.exp()) / n
        d_gamma = (-(one_m**gamma) * one_m.log() * logpt).mean()
        return g, None, grad * d_gamma  # bug: gamma is a float, its gradient must be None


class CrossEntropyGradForTarget(Function):
    """Cross-entropy whose backward returns zeros for the int64 class target instead of None."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        ctx.save_for_backward(logp, target)
        return -logp.gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp, target = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter(-1, target.unsqueeze(-1), 1.0)
        return grad * (logp.exp() - onehot) / logp.shape[0], torch.zeros_like(target)  # bug


# --------------------------------------------------------------- wrong shape → backward; transposed layout → gradcheck


class MSETransposedGrad(Function):
    """MSE whose backward returns the gradient transposed, [C, N] for an [N, C] input."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = (grad * 2 * diff / diff.numel()).t()  # bug: transposed
        return g, -g


class SampleWeightedMSEKeepdim(Function):
    """Per-sample weighted MSE whose weight gradient keeps a trailing dim: [N, 1] for a [N] weight."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff, weight)
        return (weight * (diff * diff).sum(-1)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        diff, weight = ctx.saved_tensors
        n = diff.shape[0]
        gi = grad * 2 * weight.unsqueeze(-1) * diff / n
        gw = grad * (diff * diff).sum(-1, keepdim=True) / n  # bug: keepdim=True
        return gi, -gi, gw


class CubeColumnMajorGrad(Function):
    """sum(x³) whose backward writes the gradient in column-major order: grad.t().reshape(x.shape)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x * x).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad * 3 * x * x).t().reshape(x.shape)  # bug: transposed layout, same shape


class SoftmaxCEColumnMajorGrad(Function):
    """Cross-entropy whose backward fills the [N, C] logits gradient in column-major order."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        ctx.save_for_backward(logp, target)
        return -logp.gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, target = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter(-1, target.unsqueeze(-1), 1.0)
        g = grad * (logp.exp() - onehot) / logp.shape[0]
        return g.t().reshape(logp.shape), None  # bug: transposed layout, same shape


# --------------------------------------------------------------- wrong dtype → raw_backward


class MSEFloat32Grad(Function):
    """MSE whose backward returns float32 gradients for float64 inputs (a 'mixed precision' backward)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = (grad * 2 * diff / diff.numel()).float()  # bug: .float()
        return g, -g


class RowMaxLossDefaultDtypeBuffer(Function):
    """Mean of row maxima whose backward builds its one-hot mask with torch.zeros(shape): the default float32."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor) -> torch.Tensor:
        values, index = scores.max(dim=-1)
        ctx.save_for_backward(index)
        ctx.shape = scores.shape
        return values.mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        onehot = torch.zeros(ctx.shape)  # bug: no dtype= (the default float32), no device=
        onehot[torch.arange(ctx.shape[0]), index] = 1.0
        return onehot * grad / ctx.shape[0]  # a 0-d float64 grad does not promote the float32 buffer


# --------------------------------------------------------------- grad_output mutated → grad_output_intact


class ElementwiseSquaredErrorMulInplace(Function):
    """Elementwise squared error (reduction='none') whose backward does grad_output.mul_(2·diff)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return diff * diff

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        grad.mul_(2 * diff)  # bug: in place on grad_output
        return grad, -grad


class BCEDividesGradOutputInplace(Function):
    """Mean BCE with logits whose backward does `grad_output /= n` before using it."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        grad_output /= logits.numel()  # bug: in place on grad_output
        return grad_output * (torch.sigmoid(logits) - target), None


# --------------------------------------------------------------- saved tensor modified in place → inplace


class MSESavesThenSquaresInplace(Function):
    """MSE that saves diff for backward, then squares it in place (diff.pow_(2)) to compute the loss."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return diff.pow_(2).mean()  # bug: the saved diff becomes diff²

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff / diff.numel()
        return g, -g


class BCESubtractsTargetFromSavedProbs(Function):
    """BCE on logits whose backward turns the saved probabilities into residuals in place (probs.sub_(target))."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits)
        ctx.save_for_backward(probs, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs, target = ctx.saved_tensors
        residual = probs.sub_(target)  # bug: in place on a saved tensor
        return grad * residual / residual.numel(), None


class LogLossClampsInputInplace(Function):
    """Negative log-likelihood of probabilities that clamps its (saved) input in place: probs.clamp_(min=eps)."""

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(probs)
        probs.clamp_(min=1e-6)  # bug: modifies the caller's tensor and the saved one
        return -probs.log().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        return -grad / probs / probs.numel()


# --------------------------------------------------------------- nondeterministic → determinism


class DropoutMSERedrawsMask(Function):
    """MSE after dropout whose backward draws a new dropout mask instead of saving forward's."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = (torch.rand(input.shape, dtype=input.dtype) > 0.5).to(input.dtype) / 0.5
        diff = input * mask - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        mask = (torch.rand(diff.shape, dtype=diff.dtype) > 0.5).to(diff.dtype) / 0.5  # bug: a new mask
        g = grad * 2 * diff / diff.numel()
        return g * mask, -g


class HuberWithGradientNoise(Function):
    """Huber loss whose backward adds Gaussian 'gradient noise' drawn at backward time."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return torch.where(diff.abs() < 1, 0.5 * diff * diff, diff.abs() - 0.5).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * diff.clamp(-1, 1) / diff.numel()
        g = g + 1e-3 * g.abs().mean() * torch.randn(g.shape, dtype=g.dtype)  # bug: noise in backward
        return g, -g


# --------------------------------------------------------------- wrong for non-contiguous inputs → noncontiguous


class RowLogSumExpAsStrided(Function):
    """Row-wise logsumexp that reads its input through as_strided(shape, (C, 1)): assumes row-major memory."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor) -> torch.Tensor:
        rows = scores.as_strided(scores.shape, (scores.shape[1], 1))  # bug: ignores the real strides
        lse = torch.logsumexp(rows, dim=-1)
        ctx.save_for_backward(rows, lse)
        return lse.mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        rows, lse = ctx.saved_tensors
        return grad * torch.exp(rows - lse.unsqueeze(-1)) / rows.shape[0]


class FlatMSEView(Function):
    """MSE that flattens its inputs with .view(-1), which raises on non-contiguous inputs."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = input.view(-1) - target.view(-1)  # bug: .view needs contiguous memory
        ctx.save_for_backward(flat)
        ctx.shape = input.shape
        return flat.dot(flat) / flat.numel()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (flat,) = ctx.saved_tensors
        g = (grad * 2 * flat / flat.numel()).reshape(ctx.shape)
        return g, -g


# --------------------------------------------------------------- dim confusion → gradcheck


class ClassMeanSquareWrongDim(Function):
    """sum over rows of mean over classes of x²; backward divides by x.shape[0] (N) instead of shape[1] (C)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x).mean(dim=1).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 2 * x / x.shape[0]  # bug: shape[0] where shape[1] is meant


class SoftmaxCESoftmaxOverBatch(Function):
    """Cross-entropy whose backward takes the softmax over dim 0 (the batch) instead of the classes."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return -logits.log_softmax(-1).gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        onehot = torch.zeros_like(logits).scatter(-1, target.unsqueeze(-1), 1.0)
        return grad * (logits.softmax(0) - onehot) / logits.shape[0], None  # bug: dim 0


# --------------------------------------------------------------- only wrong when a dim is 1 → edge_sizes


class CrossEntropySqueezesLogits(Function):
    """Cross-entropy that calls logits.squeeze() 'to drop a stray dim': with N=1 the class dim moves."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = logits.squeeze().log_softmax(1)  # bug: squeeze() also drops N when N == 1
        ctx.save_for_backward(logp, target)
        return -logp.gather(1, target.unsqueeze(1)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, target = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter(1, target.unsqueeze(1), 1.0)
        return grad * (logp.exp() - onehot) / logp.shape[0], None


class PerSampleSquaredNormSqueezedGrad(Function):
    """Per-sample squared norms [N] whose backward does grad.squeeze().unsqueeze(1): breaks when N=1."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x).sum(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad.squeeze().unsqueeze(1) * 2 * x  # bug: squeeze() of a [1] grad is 0-d


class SampleVarianceNaNGradAtN1(Function):
    """Sample variance along dim 0 guarded for N=1 in forward but not in backward: 0/0 = NaN gradient at N=1."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        centered = x - x.mean(0)
        ctx.save_for_backward(centered)
        return (centered * centered).sum() / max(x.shape[0] - 1, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (centered,) = ctx.saved_tensors
        return grad * 2 * centered / (centered.shape[0] - 1)  # bug: no max(N - 1, 1) as in forward


# --------------------------------------------------------------- numerically unstable → stability


class NaiveLogSumExpLoss(Function):
    """Mean row log-sum-exp computed as log(sum(exp(x))) without subtracting the max."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor) -> torch.Tensor:
        e = scores.exp()  # bug: overflows for large scores
        ctx.save_for_backward(e)
        return e.sum(-1).log().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (e,) = ctx.saved_tensors
        return grad * e / e.sum(-1, keepdim=True) / e.shape[0]


class NaiveLogSigmoidBCE(Function):
    """BCE with logits computed as log(sigmoid(x)) and log(1 − sigmoid(x)): log(0) for large |x|."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        ctx.save_for_backward(p, target)
        return -(target * p.log() + (1 - target) * (1 - p).log()).mean()  # bug: not log-sigmoid

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, target = ctx.saved_tensors
        return grad * (p - target) / p.numel(), None


# --------------------------------------------------------------- float16 overflow → low_precision


class MSESumThenDivide(Function):
    """MSE as (d·d).sum() / n in the input dtype: the sum overflows float16 past ~65k elements."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).sum() / diff.numel()  # bug: sum before divide, in float16

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff / diff.numel()
        return g, -g


class NaiveSoftmaxCE(Function):
    """Cross-entropy with softmax as exp(x) / sum(exp(x)) (no max subtraction): exp overflows float16 past 11."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        e = logits.exp()  # bug: no max subtraction
        p = e / e.sum(-1, keepdim=True)
        ctx.save_for_backward(p, target)
        return -p.gather(-1, target.unsqueeze(-1)).log().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, target = ctx.saved_tensors
        onehot = torch.zeros_like(p).scatter(-1, target.unsqueeze(-1), 1.0)
        return grad * (p - onehot) / p.shape[0], None


# --------------------------------------------------------------- silently wrong double backward → double_backward


class CubeDetachedBackward(Function):
    """sum(x³)/3 whose backward uses x.detach(): second derivatives are silently zero."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x * x * x).sum() / 3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        x = x.detach()  # bug: cuts the graph of the gradient w.r.t. x, without @once_differentiable
        return grad * x * x


class SoftplusNoGradBackward(Function):
    """Mean BCE with logits whose backward computes sigmoid under torch.no_grad(): d²/dx² silently zero."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        with torch.no_grad():  # bug: not marked @once_differentiable
            residual = torch.sigmoid(logits) - target
        return grad * residual / logits.numel(), None


# --------------------------------------------------------------- wrong jvp → forward_ad


class SoftplusJvpUsesTanh(Function):
    """Elementwise softplus whose jvp multiplies the tangent by tanh(x) instead of sigmoid(x)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return F.softplus(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x_t * torch.tanh(x)  # bug: tanh, not sigmoid


class MSEJvpIgnoresTargetTangent(Function):
    """MSE whose jvp forgets the target's tangent (only ⟨∂/∂input, input_t⟩)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        ctx.save_for_forward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * 2 * diff / diff.numel()
        return g, -g

    @staticmethod
    def jvp(ctx: Any, input_t: torch.Tensor, target_t: torch.Tensor | None) -> torch.Tensor:
        (diff,) = ctx.saved_tensors
        return (2 * diff * input_t).mean()  # bug: no − 2·diff·target_t term


# --------------------------------------------------------------- needs_input_grad mix-up → needs_input_grad


class MSENeedsInputGradTypo(Function):
    """MSE whose target branch tests ctx.needs_input_grad[0] (a copy-paste of the input branch)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (diff,) = ctx.saved_tensors
        g_input = g_target = None
        if ctx.needs_input_grad[0]:
            g_input = grad * 2 * diff / diff.numel()
        if ctx.needs_input_grad[0]:  # bug: should be [1]
            g_target = -grad * 2 * diff / diff.numel()
        return g_input, g_target


class DotLossFastPathSwapped(Function):
    """sum(x·w) with a 'fast path' for a frozen w that returns w's gradient (x) in x's slot."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return (x * w).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, w = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return grad * x, None  # bug: x's gradient is grad * w
        return grad * w, grad * x


# --------------------------------------------------------------- weight ignored → gradcheck


class WeightedMSEForgetsWeight(Function):
    """Elementwise-weighted MSE whose backward for input forgets the weight."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff, weight)
        return (weight * diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        diff, weight = ctx.saved_tensors
        n = diff.numel()
        g = grad * 2 * diff / n  # bug: no weight
        return g, -g * weight, grad * diff * diff / n


class ClassWeightedCEForgetsWeight(Function):
    """Class-weighted cross-entropy (weighted mean, as torch's) whose backward forgets the class weights."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        w = weight[target]
        ctx.save_for_backward(logp, target, w)
        return -(w * logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)).sum() / w.sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logp, target, _w = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter(-1, target.unsqueeze(-1), 1.0)
        return grad * (logp.exp() - onehot) / logp.shape[0], None, None  # bug: w[i] / w.sum() forgotten


# ------------------------------------------------- backward cut from the graph, silently → double_backward


class HuberBackwardAllNoGrad(Function):
    """Mean Huber loss whose whole backward runs under torch.no_grad(): a gradient penalty's second-order term is 0."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return torch.where(diff.abs() < 1, 0.5 * diff * diff, diff.abs() - 0.5).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        with torch.no_grad():  # bug: not @once_differentiable, so double backward silently gives zeros
            g = grad * diff.clamp(-1, 1) / diff.numel()
        return g, -g


class LogCoshBackwardFromDetached(Function):
    """Mean log-cosh whose backward works on detached copies of the saved input and of grad: second order silently 0."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff + F.softplus(-2 * diff) - math.log(2)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        d, g = diff.detach(), grad.detach()  # bug: cuts the graph without @once_differentiable
        out = g * torch.tanh(d) / d.numel()
        return out, -out


# =========================================================================== correct
# Each has a `kink_distance(**inputs)`: how far the inputs are from the nearest point where the
# function is not differentiable (the test asserts it is at least 1e-3 for every case it runs).


class BinaryHingeLoss(Function):
    """mean(relu(1 − y·s)) with labels y = 2·label − 1 ∈ {−1, +1}: correct, with a kink at y·s = 1."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = 2 * labels - 1
        margin = 1 - y * scores
        ctx.save_for_backward(y, margin)
        return margin.clamp(min=0).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        y, margin = ctx.saved_tensors
        active = (margin > 0).to(y.dtype)
        return -grad * y * active / y.numel(), None

    @staticmethod
    def kink_distance(scores: torch.Tensor, labels: torch.Tensor) -> float:
        return float((1 - (2 * labels - 1) * scores.detach()).abs().min())


class ReluDotLoss(Function):
    """sum(relu(x)·w), both differentiable: correct, with a kink at x = 0."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return (x.clamp(min=0) * w).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        active = (x > 0).to(x.dtype)
        return grad * w * active, grad * x.clamp(min=0)

    @staticmethod
    def kink_distance(x: torch.Tensor, w: torch.Tensor) -> float:
        return float(x.detach().abs().min())


class MeanAbsoluteError(Function):
    """mean(|input − target|): correct, with a kink at input = target."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return diff.abs().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = grad * diff.sign() / diff.numel()
        return g, -g

    @staticmethod
    def kink_distance(input: torch.Tensor, target: torch.Tensor) -> float:
        return float((input - target).detach().abs().min())


def _sparsemax_threshold(z: torch.Tensor) -> torch.Tensor:
    """τ with sparsemax(z) = max(z − τ, 0) summing to 1 over the last dim (keepdim)."""
    z_sorted = z.sort(dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cumsum = z_sorted.cumsum(-1)
    support = (1 + k * z_sorted > cumsum).sum(-1, keepdim=True)
    return (cumsum.gather(-1, support - 1) - 1) / support.to(z.dtype)


class Sparsemax(Function):
    """Row-wise sparsemax (Martins & Astudillo 2016), an [N, C] output: correct, kinks where z_i = τ."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        p = (z - _sparsemax_threshold(z)).clamp(min=0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        support = (p > 0).to(grad.dtype)
        mean = (grad * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (grad - mean)

    @staticmethod
    def kink_distance(z: torch.Tensor) -> float:
        if z.shape[-1] == 1:
            return math.inf  # sparsemax of one element is constantly 1
        z = z.detach()
        return float((z - _sparsemax_threshold(z)).abs().min())


class LogCoshVmap(Function):
    """Per-sample log-cosh loss [N], new-style (setup_context) with generate_vmap_rule = True: correct."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = (input - target).abs()
        return (a + F.softplus(-2 * a) - math.log(2)).sum(-1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        input, target = inputs
        ctx.save_for_backward(input, target)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input, target = ctx.saved_tensors
        g = grad.unsqueeze(-1) * torch.tanh(input - target)
        return g, -g

    @staticmethod
    def kink_distance(input: torch.Tensor, target: torch.Tensor) -> float:
        return math.inf  # smooth (the |d| in forward is only a stable way to write log cosh)


class BCEWithLogitsJvp(Function):
    """mean(softplus(x) − t·x) with a jvp for forward-mode AD, both arguments differentiable: correct."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        ctx.save_for_forward(logits, target)
        return (F.softplus(logits) - target * logits).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, target = ctx.saved_tensors
        n = logits.numel()
        return grad * (torch.sigmoid(logits) - target) / n, -grad * logits / n

    @staticmethod
    def jvp(ctx: Any, logits_t: torch.Tensor | None, target_t: torch.Tensor | None) -> torch.Tensor:
        logits, target = ctx.saved_tensors
        n = logits.numel()
        out = torch.zeros((), dtype=logits.dtype, device=logits.device)
        if logits_t is not None:
            out = out + ((torch.sigmoid(logits) - target) * logits_t).sum() / n
        if target_t is not None:
            out = out - (logits * target_t).sum() / n
        return out

    @staticmethod
    def kink_distance(logits: torch.Tensor, target: torch.Tensor) -> float:
        return math.inf


class SparsemaxResidualLoss(Function):
    """½‖sparsemax(z) − t‖² editing the inner Sparsemax's saved output in place inside forward: correct."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = Sparsemax.apply(z)
        support = (p > 0).to(z.dtype)
        p.sub_(target)  # the residual, in the inner Function's saved tensor
        ctx.save_for_backward(p, support)
        return 0.5 * (p * p).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        residual, support = ctx.saved_tensors
        r = grad * residual
        mean = (r * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (r - mean), None

    @staticmethod
    def kink_distance(z: torch.Tensor, target: torch.Tensor) -> float:
        return Sparsemax.kink_distance(z)


class PoissonNLLLogRate(Function):
    """Poisson NLL on log-rates, mean(exp(x) − t·x): correct; at large x exp overflows because the true value does."""

    @staticmethod
    def forward(ctx: Any, log_rate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rate = log_rate.exp()
        ctx.save_for_backward(rate, target)
        return (rate - target * log_rate).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rate, target = ctx.saved_tensors
        return grad * (rate - target) / rate.numel(), None

    @staticmethod
    def kink_distance(log_rate: torch.Tensor, target: torch.Tensor) -> float:
        return math.inf


class MovingAverageMSE(Function):
    """MSE of a length-2 moving average along dim 0 against a target: correct; refuses N=1 with a clear error."""

    WINDOW = 2

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < MovingAverageMSE.WINDOW:
            raise ValueError(f"window {MovingAverageMSE.WINDOW} is longer than the input ({x.shape[0]} rows)")
        smooth = (x[1:] + x[:-1]) / 2
        diff = smooth - target[1:]
        ctx.save_for_backward(diff)
        return (diff * diff).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        g = grad * diff / diff.numel()  # d/d smooth of mean(diff²) = 2·diff/n, and smooth = half each row
        out = torch.zeros(diff.shape[0] + 1, *diff.shape[1:], dtype=diff.dtype, device=diff.device)
        out[1:] += g
        out[:-1] += g
        return out, None

    @staticmethod
    def kink_distance(x: torch.Tensor, target: torch.Tensor) -> float:
        return math.inf

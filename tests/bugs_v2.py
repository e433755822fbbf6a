"""The bug library, part 2: Functions for the checks undefined_grad, aliased_args, mutation,
nondiff_outputs, autocast and compile_agreement (tests/test_new_checks.py holds the table).

As in tests/bugs.py, each broken Function's docstring names its one bug in one line, and the
correct ones are written as third-party code would be (z-loss heads, fused linear cross-entropy,
InfoNCE, a loss that returns a count).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

# =========================================================================== shared maths


def _ce_and_z(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean cross-entropy, the PaLM z-loss mean(logsumexp²), softmax and logsumexp."""
    lse = logits.logsumexp(-1)
    ce = (lse - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)).mean()
    return ce, (lse * lse).mean(), (logits - lse.unsqueeze(-1)).exp(), lse


def _ce_z_grads(probs: torch.Tensor, lse: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d ce / d logits and d z / d logits."""
    n = target.numel()
    onehot = torch.zeros_like(probs).scatter_(-1, target.unsqueeze(-1), 1.0)
    return (probs - onehot) / n, 2 * lse.unsqueeze(-1) * probs / n


def _info_nce(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a·bᵀ (the logits scaled by 1/T by the caller) against the diagonal."""
    logits = a @ b.t()
    return (logits.logsumexp(-1) - logits.diagonal()).mean()


def _info_nce_grads(a: torch.Tensor, b: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of _info_nce(a·scale, b) with respect to a and b, from the unscaled a."""
    g = (a * scale @ b.t()).softmax(-1)
    g = (g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)) / g.shape[0]
    return g @ b * scale, g.t() @ a * scale


T = 2.0
"""Temperature: a power of two, so scaling in place and back restores the bytes exactly."""

# =========================================================================== undefined_grad


class _CEWithZLoss(Function):
    """(cross-entropy, z-loss) from one pass over the logits, as fused LM heads return them."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ce, z, probs, lse = _ce_and_z(logits, target)
        ctx.save_for_backward(probs, lse, target)
        return ce, z


class CEWithZLoss(_CEWithZLoss):
    """(cross-entropy, z-loss), default materialized grads: correct."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: torch.Tensor, grad_z: torch.Tensor) -> tuple[torch.Tensor, None]:
        g_ce, g_z = _ce_z_grads(*ctx.saved_tensors)
        return grad_ce * g_ce + grad_z * g_z, None


class CEWithZLossNoneAware(_CEWithZLoss):
    """(cross-entropy, z-loss) with set_materialize_grads(False), treating a None grad as zero: correct."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        return _CEWithZLoss.forward(ctx, logits, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: torch.Tensor | None, grad_z: torch.Tensor | None) -> tuple[Any, None]:
        g_ce, g_z = _ce_z_grads(*ctx.saved_tensors)
        grad = None
        if grad_ce is not None:
            grad = grad_ce * g_ce
        if grad_z is not None:
            grad = grad_z * g_z if grad is None else grad + grad_z * g_z
        return grad, None


class CEWithZLossNoneCrash(_CEWithZLoss):
    """set_materialize_grads(False), then multiplies the None grad of an unused output: TypeError."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        return _CEWithZLoss.forward(ctx, logits, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: torch.Tensor, grad_z: torch.Tensor) -> tuple[torch.Tensor, None]:
        g_ce, g_z = _ce_z_grads(*ctx.saved_tensors)
        return grad_ce * g_ce + grad_z * g_z, None  # bug: grad_z is None when only ce is used


class CEWithZLossDropsOnNone(_CEWithZLoss):
    """set_materialize_grads(False), and returns no gradient at all when either grad is None."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        return _CEWithZLoss.forward(ctx, logits, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: torch.Tensor | None, grad_z: torch.Tensor | None) -> tuple[Any, None]:
        if grad_ce is None or grad_z is None:
            return None, None  # bug: the used output's gradient is dropped too
        g_ce, g_z = _ce_z_grads(*ctx.saved_tensors)
        return grad_ce * g_ce + grad_z * g_z, None


class PerSampleSquaredErrorUnitGrad(Function):
    """Per-sample squared error [N] whose backward normalizes grad_output to unit norm: 0/0 when it is zero."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = input - target
        ctx.save_for_backward(diff)
        return (diff * diff).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = 2 * diff * (grad / grad.norm()).unsqueeze(-1)  # bug: "the weights' scale is the optimizer's job"
        return g, -g


# =========================================================================== aliased_args


class InfoNCE(Function):
    """InfoNCE between two views' embeddings (CLIP-style, one direction) at temperature T, AMP-ready: correct."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _info_nce(a / T, b)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.saved_tensors
        ga, gb = _info_nce_grads(a, b, 1 / T)
        return grad * ga, grad * gb


class WeightedMSEChecksWeights(Function):
    """mean(w·(input − target)²), all three learnable, refusing weights that are not positive: correct."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if bool((weight <= 0).any()):
            raise ValueError("weights must be positive")
        ctx.save_for_backward(input, target, weight)
        diff = input - target
        return (weight * diff * diff).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input, target, weight = ctx.saved_tensors
        diff = input - target
        n = diff.numel()
        g = grad * 2 * weight * diff / n
        return g, -g, grad * diff * diff / n


class InfoNCEScalesInPlace(Function):
    """InfoNCE that divides `a` by T in place (through .data, undone after) to save a copy: f(x, x) scales b too."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        a.data.div_(T)  # bug: when b is a, b is divided too
        loss = _info_nce(a, b)
        a.data.mul_(T)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.saved_tensors
        ga, gb = _info_nce_grads(a, b, 1 / T)
        return grad * ga, grad * gb


class InfoNCEBackwardScalesInPlace(Function):
    """InfoNCE whose backward divides the saved `a` by T in place (undone after): with f(x, x), gb sees it too."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _info_nce(a / T, b)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.saved_tensors
        a.data.div_(T)  # bug: when b is a, b is divided too
        ga, gb = _info_nce_grads(a, b, 1.0)  # ∂/∂(a/T) and ∂/∂b
        a.data.mul_(T)
        return grad * ga / T, grad * gb


# =========================================================================== mutation


def _storage_alias(x: torch.Tensor) -> torch.Tensor:
    """A tensor on x's memory with its own version counter: how a Triton kernel sees x."""
    return torch.empty(0, dtype=x.dtype, device=x.device).set_(
        x.untyped_storage(), x.storage_offset(), x.size(), x.stride()
    )


class FusedSoftmaxCE(Function):
    """Cross-entropy whose forward writes the gradient into the softmax buffer, then saves it (Liger-style): correct."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        loss = -log_probs.gather(-1, target.unsqueeze(-1)).mean()
        grad = log_probs.exp()
        _storage_alias(grad).scatter_add_(-1, target.unsqueeze(-1), -torch.ones_like(grad[..., :1]))
        ctx.save_for_backward(grad / target.numel())  # saved after the kernel wrote it
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None


class SoftmaxCEOverwritesSavedProbs(Function):
    """Saves the softmax, then a raw write turns it into the gradient; backward subtracts the one-hot again."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        probs = log_probs.exp()
        ctx.save_for_backward(probs, target)
        _storage_alias(probs).scatter_add_(-1, target.unsqueeze(-1), -torch.ones_like(probs[..., :1]))  # bug
        return -log_probs.gather(-1, target.unsqueeze(-1)).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs, target = ctx.saved_tensors
        onehot = torch.zeros_like(probs).scatter_(-1, target.unsqueeze(-1), 1.0)
        return (probs - onehot) * grad_output / target.numel(), None


class BCEBackwardWritesGradIntoLogits(Function):
    """BCE-with-logits whose backward computes the gradient in the caller's logits buffer (a raw write)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        return (torch.nn.functional.softplus(logits) - target * logits).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        buf = _storage_alias(logits)  # bug: "logits are not needed any more", but they are the caller's
        torch.sigmoid(buf, out=buf)
        buf.sub_(target).mul_(grad_output / target.numel())
        return buf.clone(), None


class SoftplusBackwardScalesSavedSigmoid(Function):
    """mean(softplus(x)) whose backward scales the saved sigmoid in place by a raw write and returns it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(torch.sigmoid(x))
        return torch.nn.functional.softplus(x).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        _storage_alias(s).mul_(grad_output / s.numel())  # bug: a second backward reads the scaled values
        return s.clone()


class MSEOverwritesInputInForward(Function):
    """Mean squared error whose forward saves `input`, then reuses its memory for the difference (a raw write)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(input)
        diff = _storage_alias(input).sub_(target)  # bug: the caller's input now holds input − target
        return (diff * diff).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        g = 2 * grad * diff / diff.numel()
        return g, -g


# =========================================================================== nondiff_outputs


def _masked_ce(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the targets that are not class 0 ("ignore"), and how many those are."""
    valid = target != 0
    count = valid.sum().to(logits.dtype)
    nll = logits.logsumexp(-1) - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    ctx.save_for_backward(logits, target, valid, count)
    return (nll * valid).sum() / count.clamp(min=1), count


class CEWithValidCount(Function):
    """(mean cross-entropy over non-ignored targets, how many) with the count marked non-differentiable: correct."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, count = _masked_ce(ctx, logits, target)
        ctx.mark_non_differentiable(count)
        return loss, count

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor, _grad_count: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target, valid, count = ctx.saved_tensors
        onehot = torch.zeros_like(logits).scatter_(-1, target.unsqueeze(-1), 1.0)
        g = (logits.softmax(-1) - onehot) * valid.unsqueeze(-1) / count.clamp(min=1)
        return grad * g, None


class TopKHingeWithIndices(Function):
    """Mean of the k=2 largest hinge terms per row, and their int64 indices (like max's): correct."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top, index = (1 + scores).clamp(min=0).topk(2, dim=-1)
        ctx.save_for_backward(top, index)
        ctx.shape = scores.shape
        return top.mean(), index

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor, _grad_index: Any) -> torch.Tensor:
        top, index = ctx.saved_tensors
        g = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device)
        return g.scatter(-1, index, (top > 0).to(grad.dtype) * grad / top.numel())


class CEWithValidCountUnmarked(CEWithValidCount):
    """Returns the float count of valid targets without marking it non-differentiable."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _masked_ce(ctx, logits, target)  # bug: the count is not marked


class CEWithValidCountMarksLoss(CEWithValidCount):
    """Marks the loss non-differentiable instead of the count (copy-paste of the wrong name)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, count = _masked_ce(ctx, logits, target)
        ctx.mark_non_differentiable(loss)  # bug: should be count
        return loss, count


class TopKHingeBackwardMissesIndexSlot(TopKHingeWithIndices):
    """Returns (loss, indices) but backward takes one grad, as if the index output had no slot."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        top, index = ctx.saved_tensors
        g = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device)
        return g.scatter(-1, index, (top > 0).to(grad.dtype) * grad / top.numel())


# =========================================================================== autocast


def _linear_ce_forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.t()  # autocast: bfloat16 on CPU
    log_probs = logits.log_softmax(-1)
    ctx.save_for_backward(hidden, weight, log_probs.exp(), target)
    return -log_probs.gather(-1, target.unsqueeze(-1)).mean()


def _linear_ce_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
    hidden, weight, probs, target = ctx.saved_tensors
    onehot = torch.zeros_like(probs).scatter_(-1, target.unsqueeze(-1), 1.0)
    grad_logits = (probs - onehot) * (grad / target.numel())
    return grad_logits @ weight, grad_logits.t() @ hidden, None


class LinearCrossEntropyAmp(Function):
    """Fused linear + cross-entropy with @custom_fwd / @custom_bwd, so AMP runs it in bfloat16: correct."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _linear_ce_forward(ctx, hidden, weight, target)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return _linear_ce_backward(ctx, grad)


class LinearCrossEntropyFloat32(Function):
    """Fused linear + cross-entropy casting its inputs to float32 under AMP (cast_inputs), @custom_bwd: correct."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _linear_ce_forward(ctx, hidden, weight, target)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return _linear_ce_backward(ctx, grad)


class LinearCrossEntropyNoCustomBwd(Function):
    """Fused linear + cross-entropy without @custom_bwd: backward multiplies saved bfloat16 tensors by float32 ones."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _linear_ce_forward(ctx, hidden, weight, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return _linear_ce_backward(ctx, grad)  # bug: runs outside forward's autocast state


class LinearCrossEntropyCastNoCustomBwd(Function):
    """custom_fwd(cast_inputs=float32) without @custom_bwd: backward inside autocast runs its matmuls in bfloat16."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _linear_ce_forward(ctx, hidden, weight, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return _linear_ce_backward(ctx, grad)  # bug: autocast state is the caller's


class MSEHalfPathForgetsMean(Function):
    """Mean squared error with a separate low-precision path (as dtype-dispatched kernels have) that forgets the 1/N."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.low = input.dtype in (torch.float16, torch.bfloat16)
        diff = input.float() - target.float() if ctx.low else input - target
        ctx.save_for_backward(diff)
        ctx.dtypes = input.dtype, target.dtype
        return (diff * diff).mean().to(input.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (diff,) = ctx.saved_tensors
        scale = 1.0 if ctx.low else 1.0 / diff.numel()  # bug: the low-precision path forgets the mean
        g = 2 * diff * grad.to(diff.dtype) * scale
        return g.to(ctx.dtypes[0]), -g.to(ctx.dtypes[1])


# =========================================================================== compile_agreement


class LogCoshNewStyle(Function):
    """Mean log-cosh, new-style (setup_context), so torch.func can transform it: correct."""

    @staticmethod
    def forward(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = input - target
        return (d + torch.nn.functional.softplus(-2 * d) - 0.6931471805599453).mean()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input, target = ctx.saved_tensors
        g = grad * torch.tanh(input - target) / input.numel()
        return g, -g


class SmoothedCETrainingByRequiresGrad(Function):
    """Label-smoothed cross-entropy that smooths only `if logits.requires_grad`: torch.func sees no smoothing."""

    @staticmethod
    def forward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        eps = 0.1 if logits.requires_grad else 0.0  # bug: under torch.func inputs never require grad here
        logp = logits.log_softmax(-1)
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return ((1 - eps) * nll - eps * logp.mean(-1)).mean()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        logits, target = inputs
        ctx.save_for_backward(logits, target)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        eps = 0.1
        onehot = torch.zeros_like(logits).scatter_(-1, target.unsqueeze(-1), 1.0)
        smooth = (1 - eps) * onehot + eps / logits.shape[-1]
        return grad * (logits.softmax(-1) - smooth) / target.numel(), None


class CEWithZLossOnlyWhenTraining(Function):
    """Cross-entropy plus a z-loss added only `if logits.requires_grad` (training): torch.func's forward drops it."""

    @staticmethod
    def forward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce, z, _, _ = _ce_and_z(logits, target)
        return ce + 1e-2 * z if logits.requires_grad else ce  # bug: under torch.func this is never training

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        logits, target = inputs
        ctx.save_for_backward(logits, target)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        _, _, probs, lse = _ce_and_z(logits, target)
        g_ce, g_z = _ce_z_grads(probs, lse, target)
        return grad * (g_ce + 1e-2 * g_z), None

"""LocalAttention on the CPU in three kernel calls plus its BN and tanh: what ``impl="auto"`` runs.

The block as modules is a dozen ops per direction: the grouped 1x1 value projection and logit
branch (oneDNN / MKL), the neighbour gather of nu, omega + nu, the softmax, masking the
outside, the weighting. At StRA-ResNet-50's layer4 shape most of its time went to the grouped
1x1 convs: MKL runs its AVX2 code on AMD CPUs, and oneDNN's grouped conv backward is slow in
NCHW. Here, with the kernels of ``_local_kernel.c``:

    u, h    = value(x), branch[0](x)        one register-blocked GEMM call (both convs read x)
    t       = tanh(BN(h))                   BN's batch statistics as two reductions; tanh as 2 sigmoid(2h) - 1
    logits  = BN(branch[3](t))              a GEMM call, then BN likewise
    out     = softmax-weighted sum          one call: logits -> softmax -> weighting, per (b, g)

and the backward mirrors it (the input's gradient of both convs in one call). Same parameters,
state_dict, BN statistics, outputs and gradients as the modules, up to float rounding.

In inference (the branch's BNs on their running statistics, its activation tanh, and no
gradient to record: ``torch.no_grad`` / ``inference_mode``, or nothing requiring one) the whole
block is one kernel call instead (``la_infer``): per (image, group) both convs, the BNs and
tanh, the second conv, the softmax and the weighting. At batch 1 the autograd path's dozen
Python-level calls cost more than its arithmetic.

It runs where it can be told apart from the modules by nothing but speed: a contiguous NCHW
float32/float64 CPU input, stride 1, the block built as ``LocalAttention`` builds it, the
kernels loaded, and nothing observing the block: no hooks on it or its children (the paper's
counter and ptflops hook every module), no global hooks, no ``torch.jit`` trace (fvcore),
``torch.compile`` or ONNX export, no CPU autocast. Everything else takes the modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _module

from strabench.layers import _local_kernel
from strabench.layers._local_ops import _flat_valid
from strabench.layers._pointwise import capturing

__all__ = ["applies", "attention", "forward", "logits", "projections"]


def _plain_pointwise(conv: nn.Module, groups: int) -> bool:
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
        and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == groups
        and conv.padding_mode == "zeros"
    )


def _tree(block: nn.Module) -> list[nn.Module]:
    """``block`` and its descendants, walking ``_modules`` (``Module.modules()`` and
    ``parameters()`` cost tens of microseconds per call, a batch-1 block's whole budget)."""
    tree = [block]
    for m in tree:  # a list being extended while iterated: the appended modules are visited too
        if m._modules:
            tree += [c for c in m._modules.values() if c is not None]
    return tree


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def input_fits(x: Tensor) -> bool:
    """A fused path's input: a plain contiguous NCHW float32/float64 CPU tensor, not empty, with
    no trace, script, compile or ONNX export recording the call and no CPU autocast."""
    return (
        not capturing() and type(x) is Tensor and x.is_cpu and x.dtype in (torch.float32, torch.float64)
        and x.dim() == 4 and x.is_contiguous() and x.numel() > 0 and not _cpu_autocast()
    )


def unobserved(tree: list[nn.Module], x: Tensor) -> bool:
    """No hooks on the modules of ``tree`` nor global ones (the paper's counter and ptflops hook
    every module), and every parameter and floating buffer of them on the CPU, contiguous, of
    ``x``'s dtype."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks
            or _module._global_backward_hooks or _module._global_backward_pre_hooks):
        return False
    dtype = x.dtype
    for m in tree:
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
            return False
        for t in m._parameters.values():
            if t is not None and (t.dtype != dtype or not t.is_cpu or not t.is_contiguous()):
                return False
        for t in m._buffers.values():
            if t is not None and (not t.is_cpu or not t.is_contiguous() or (t.dtype != dtype and t.is_floating_point())):
                return False
    return True


def records_grad(block: nn.Module, x: Tensor) -> bool:
    """Whether autograd would record a graph through ``block`` (grad mode on and x or a parameter
    requiring a gradient): the inference kernels have no backward. Walks the block only in grad mode."""
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(
        t is not None and t.requires_grad for m in _tree(block) for t in m._parameters.values()
    )


def eval_norm(bn: nn.Module) -> bool:
    """A BatchNorm2d that normalises with its running statistics (what the inference kernels apply)."""
    return (
        type(bn) is nn.BatchNorm2d and not bn.training and bn.track_running_stats
        and bn._buffers.get("running_mean") is not None and bn._buffers.get("running_var") is not None
    )


# The inference paths read submodules, parameters and buffers from the ``_modules`` /
# ``_parameters`` / ``_buffers`` dicts: ``nn.Module.__getattr__`` and ``nn.Sequential.__getitem__``
# cost about a microsecond each, and a batch-1 call is a few tens of microseconds of kernel.


def conv_args(conv: nn.Module) -> _local_kernel.Conv:
    return conv._parameters["weight"], conv._parameters.get("bias")


def norm_args(bn: nn.Module) -> _local_kernel.Norm:
    buffers = bn._buffers
    return bn._parameters.get("weight"), bn._parameters.get("bias"), buffers["running_mean"], buffers["running_var"], bn.eps


def applies(block: nn.Module, x: Tensor) -> bool:
    """Whether ``forward(block, x)`` runs ``block`` (a LocalAttention) here (module docstring)."""
    if block.impl not in ("auto", "fused") or block.stride != 1 or not input_fits(x):
        return False
    branch = block.branch
    if len(branch) != 5 or not (_plain_pointwise(block.value, block.groups)
                                and _plain_pointwise(branch[0], block.groups)
                                and _plain_pointwise(branch[3], block.groups)):
        return False
    if not unobserved(_tree(block), x):
        return False
    return _local_kernel.available()


def _grouped(weight: Tensor, groups: int) -> Tensor:
    """A (G*M, K, 1, 1) conv weight as (G, M, K)."""
    return weight.view(groups, weight.shape[0] // groups, weight.shape[1])


class _Pointwise(torch.autograd.Function):
    """Grouped 1x1 convs (one or two) of the same input, with their optional biases."""

    @staticmethod
    def forward(ctx, x: Tensor, groups: int, *params: Tensor | None) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.groups = groups
        ctx.save_for_backward(x, *params)
        pairs = list(zip(params[::2], params[1::2]))
        return tuple(_local_kernel.pointwise_forward(_grouped(w, groups), b, x) for w, b in pairs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        x, *params = ctx.saved_tensors
        g = ctx.groups
        weights, biases = params[::2], params[1::2]
        grads = tuple(t.contiguous() for t in grads)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _local_kernel.pointwise_backward_input([(_grouped(w, g), t) for w, t in zip(weights, grads)])
        x_cl = None
        out: list[Tensor | None] = []
        for i, (w, b, t) in enumerate(zip(weights, biases, grads)):
            grad_w = grad_b = None
            if ctx.needs_input_grad[2 + 2 * i]:
                if x_cl is None:
                    x_cl = _local_kernel.channels_last(x)
                grad_w = _local_kernel.pointwise_backward_weight(t, x_cl, g).view_as(w)
            if b is not None and ctx.needs_input_grad[3 + 2 * i]:
                grad_b = t.sum((0, 2, 3))
            out += [grad_w, grad_b]
        return (grad_x, None, *out)


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode batch norm whose statistics are two plain reductions (mean, then the mean
    square of x - mean): torch's NCHW statistics kernel is ~4x slower at these shapes (a few
    pixels per image). Normalising and the backward are torch's own kernels.
    Returns (y, batch mean, biased batch variance)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float):  # type: ignore[override]
        n = x.numel() // x.shape[1]
        mean = x.sum((0, 2, 3)) / n
        var = (x - mean.view(1, -1, 1, 1)).square_().sum((0, 2, 3)) / n
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        ctx.eps = eps
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps))
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _mean: Tensor, _var: Tensor):  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        return gx, gw, gb, None


def _batch_norm(bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(x)``: a training BatchNorm2d through ``_BatchNormTrain``, updating its running
    statistics as ``nn.BatchNorm2d`` does (momentum, or the cumulative average when it is None;
    the unbiased variance); anything else through the module."""
    n = x.numel() // x.shape[1]
    if not (type(bn) is nn.BatchNorm2d and bn.training and bn.affine and bn.track_running_stats
            and bn.running_mean is not None and bn.num_batches_tracked is not None and n > 1):
        return bn(x)
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    y, mean, var = _BatchNormTrain.apply(x, bn.weight, bn.bias, bn.eps)
    with torch.no_grad():
        bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        bn.running_var.mul_(1 - factor).add_(var, alpha=factor * n / (n - 1))
    return y


class _Tanh(torch.autograd.Function):
    """tanh as 2 sigmoid(2x) - 1: on a CPU torch's tanh kernel is ~10x slower than its sigmoid.

    Within a few ulp of 1 of torch.tanh (absolute: no relative accuracy near 0, where nothing
    downstream of the branch's BN needs it); the gradient is tanh's own, 1 - y^2.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def _activation(act: nn.Module, x: Tensor) -> Tensor:
    return _Tanh.apply(x) if type(act) is nn.Tanh else act(x)


class _Attention(torch.autograd.Function):
    """out = sum_k softmax_k(omega_k + nu(p + delta_k)) * value(p + delta_k), from the logits."""

    @staticmethod
    def forward(ctx, logits: Tensor, value: Tensor, kernel_size: int, mask: bool) -> Tensor:  # type: ignore[override]
        h, w = value.shape[-2:]
        valid = _flat_valid(kernel_size, h, w, value).contiguous()
        out, attn = _local_kernel.attention_forward(logits.contiguous(), valid, value, kernel_size, mask)
        ctx.kernel_size = kernel_size
        ctx.save_for_backward(attn, valid, value)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        attn, valid, value = ctx.saved_tensors
        grad_logits, grad_value = _local_kernel.attention_backward(
            attn, valid, value, grad_out.contiguous(), ctx.kernel_size, ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
        )
        return grad_logits, grad_value, None, None


def projections(value: nn.Conv2d, first: nn.Conv2d, groups: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """(value(x), first(x)): the two grouped 1x1 convs that read x, one kernel call each way."""
    return _Pointwise.apply(x, groups, value.weight, value.bias, first.weight, first.bias)


def logits(rest: nn.Sequential, groups: int, h: Tensor) -> Tensor:
    """The branch after its first conv (BN, activation, grouped 1x1 conv, BN) applied to h."""
    bn1, act, second, bn2 = rest
    (out,) = _Pointwise.apply(_activation(act, _batch_norm(bn1, h)), groups, second.weight, second.bias)
    return _batch_norm(bn2, out)


def attention(block: nn.Module, logits: Tensor, value: Tensor) -> Tensor:
    """The weighted sum of ``value`` by the softmax of ``logits`` (omega + nu), one kernel call each way."""
    return _Attention.apply(logits, value, block.kernel_size, block.border == "mask")


def _infer(block: nn.Module, x: Tensor) -> Tensor | None:
    """The block in one kernel call where its branch is BN (eval) -> tanh -> conv -> BN (eval) and
    nothing records a gradient (inference); None elsewhere."""
    mods = block._modules
    branch = list(mods["branch"]._modules.values())
    if not (type(branch[2]) is nn.Tanh and eval_norm(branch[1]) and eval_norm(branch[4])):
        return None
    if records_grad(block, x):
        return None
    k = block.kernel_size
    valid = _flat_valid(k, x.shape[2], x.shape[3], x).contiguous()
    return _local_kernel.local_attention_infer(
        x, block.groups, k, block.border == "mask", conv_args(mods["value"]), conv_args(branch[0]),
        conv_args(branch[3]), [norm_args(branch[1]), norm_args(branch[4])], valid,
    )


def forward(block: nn.Module, x: Tensor) -> Tensor:
    """``block(x)`` for a LocalAttention where ``applies(block, x)``."""
    out = _infer(block, x)
    if out is not None:
        return out
    u, h = projections(block.value, block.branch[0], block.groups, x)
    return attention(block, logits(block.branch[1:], block.groups, h), u)

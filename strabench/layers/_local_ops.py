"""Kernels for local (K x K window) attention: the weighted sum of zero-padded neighbours.

The released StRA code weights the values with ``F.unfold``, which materialises a K*K times
larger copy of the value tensor; on a CPU that makes the block slower than the 3x3 conv it
replaces. ``local_weighted_sum`` gives the same result (and gradients) by accumulating shifted
views of the value tensor into one output buffer, so memory traffic stays ~K*K passes over a
C x H x W tensor and nothing K*K times larger is ever allocated.

Conventions shared by everything here (and by ``LocalAttention``):

- ``K`` is odd, padding is ``K // 2``, so ``Ho = (H - 1) // stride + 1`` (a K x K conv with
  padding K // 2 gives the same size);
- offset index ``k = (dy + K // 2) * K + (dx + K // 2)`` (row-major over the window), neighbour
  of output pixel ``p`` is input pixel ``p * stride + (dy, dx)``;
- ``attn`` has shape ``(B, G, K*K, Ho, Wo)``; one weight per (group, offset) serves all
  ``C // G`` channels of that group.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from strabench.layers import _local_kernel, ops
from strabench.layers._window import flat_valid, output_size

__all__ = [
    "KERNELS",
    "LOCAL_WEIGHTED_SUM_OP_NAME",
    "LocalWeightedSum",
    "gather_neighbours",
    "local_attention_macs",
    "neighbour_windows",
    "local_weighted_sum_jit_macs",
    "local_weighted_sum",
    "output_size",
    "unfold_weighted_sum",
]

#: How the fast op shows up in a ``torch.jit.trace`` graph as fvcore names it
#: (``prim::PythonOp`` + ``.`` + the autograd Function's class name). A FLOP counter that
#: registers a handle under this name counts the weighting instead of skipping it.
LOCAL_WEIGHTED_SUM_OP_NAME = "prim::PythonOp.LocalWeightedSum"


def local_attention_macs(
    batch: int, channels: int, groups: int, kernel_size: int, out_h: int, out_w: int
) -> int:
    """Multiply-adds of the attention weighting: every output element sums K*K products.

    ``groups`` does not change the count (a weight is shared by a group's channels, but each
    channel still does its own K*K multiply-adds); it is accepted so counters can pass the
    block's configuration through unchanged.
    """
    del groups
    return batch * channels * out_h * out_w * kernel_size * kernel_size


def local_weighted_sum_jit_macs(inputs: Sequence[Any], outputs: Sequence[Any]) -> int:
    """fvcore-style handle for ``LOCAL_WEIGHTED_SUM_OP_NAME``: MACs from the traced input shapes.

    ``inputs`` are the traced node's tensor inputs (attn, value); the ints are not inputs.
    """
    del outputs
    b, _, kk, ho, wo = inputs[0].type().sizes()
    channels = inputs[1].type().sizes()[1]
    return b * channels * ho * wo * kk


def _check_args(attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> None:
    if torch.jit.is_tracing():  # sizes are traced tensors there; the example input ran eagerly first
        return
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if value.dim() != 4 or attn.dim() != 5:
        raise ValueError(
            f"expected value (B, C, H, W) and attn (B, G, K*K, Ho, Wo), "
            f"got {tuple(value.shape)} and {tuple(attn.shape)}"
        )
    b, c, h, w = value.shape
    g = attn.shape[1]
    expected = (b, g, kernel_size * kernel_size, output_size(h, kernel_size, stride),
                output_size(w, kernel_size, stride))
    if g < 1 or c % g != 0 or tuple(attn.shape) != expected:
        raise ValueError(
            f"attn shape {tuple(attn.shape)} does not fit value {tuple(value.shape)} "
            f"with kernel_size={kernel_size}, stride={stride} (expected {expected}, C % G == 0)"
        )


# --------------------------------------------------------------------------------------------
# neighbour gathering (cheap: used for the G-channel nu map)


def neighbour_windows(t: Tensor, kernel_size: int, stride: int, fill: float) -> Tensor:
    """``out[b, g, ky, kx, i, j] = t[b, g, i*stride + ky - K//2, j*stride + kx - K//2]``, ``fill`` outside.

    A view of one padded copy of ``t`` (meant for the small per-group ``nu`` logits): adding it
    to a (B, G, K, K, Ho, Wo) tensor broadcasts without materialising the K*K copies. Built from
    ``Tensor.unfold`` views so a ``torch.jit.trace`` records no shape arithmetic.
    """
    if ops.decomposing():
        from strabench.layers._local_traceable import traceable_neighbour_windows

        return traceable_neighbour_windows(t, kernel_size, stride, fill)
    pad = kernel_size // 2
    padded = F.pad(t, (pad, pad, pad, pad), value=fill) if pad else t
    windows = padded.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)  # (B, G, Ho, Wo, K, K)
    return windows.permute(0, 1, 4, 5, 2, 3)


def gather_neighbours(t: Tensor, kernel_size: int, stride: int, fill: float) -> Tensor:
    """``out[b, g, k, i, j] = t[b, g, i*stride + dy_k, j*stride + dx_k]``, ``fill`` outside.

    ``neighbour_windows`` with the offsets flattened row-major: this materialises K*K copies.
    """
    return neighbour_windows(t, kernel_size, stride, fill).flatten(2, 3)


# --------------------------------------------------------------------------------------------
# the straightforward version (what the authors do), kept as impl="unfold"


def unfold_weighted_sum(attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> Tensor:
    """``local_weighted_sum`` through ``F.unfold``: simple, but materialises (B, C, K*K, Ho*Wo)."""
    _check_args(attn, value, kernel_size, stride)
    b, c, _, _ = value.shape
    g, kk, ho, wo = attn.shape[1:]
    cols = F.unfold(value, kernel_size, padding=kernel_size // 2, stride=stride)
    cols = cols.view(b, g, c // g, kk, ho * wo)
    out = (cols * attn.reshape(b, g, 1, kk, ho * wo)).sum(dim=3)
    return out.view(b, c, ho, wo)


# --------------------------------------------------------------------------------------------
# the fast version


def _memory_format(t: Tensor) -> torch.memory_format:
    """channels_last if ``t`` is laid out that way (and not also plain-contiguous), else NCHW."""
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _span(n_out: int, n_in: int, d: int, stride: int) -> tuple[slice, slice] | None:
    """Output indices i with ``0 <= i*stride + d < n_in``, and the input indices they read."""
    lo = max(0, -(d // stride))  # ceil(-d / stride)
    hi = min(n_out - 1, (n_in - 1 - d) // stride)
    if hi < lo:
        return None
    return slice(lo, hi + 1), slice(lo * stride + d, hi * stride + d + 1, stride)


def _windows(kernel_size: int, stride: int, h: int, w: int, ho: int, wo: int):
    """Per offset k: (k, out rows, out cols, in rows, in cols) of the in-image part, if any."""
    pad = kernel_size // 2
    for k in range(kernel_size * kernel_size):
        ry = _span(ho, h, k // kernel_size - pad, stride)
        rx = _span(wo, w, k % kernel_size - pad, stride)
        if ry is not None and rx is not None:
            yield k, ry[0], rx[0], ry[1], rx[1]


def _flat_valid(kernel_size: int, h: int, w: int, like: Tensor) -> Tensor:
    """(K*K, H*W) 1/0 mask: is the k-th neighbour of flat pixel p inside the image (``_window.flat_valid``)."""
    return flat_valid(kernel_size, h, w, like)


def _flat_shifts(kernel_size: int, h: int, w: int):
    """Stride 1 on the flattened H*W axis: per offset, (k, lo, hi, off) with out[lo:hi] <- in[lo+off:hi+off].

    A flat shift by ``dy*W + dx`` wraps across rows at the left/right edges; those positions
    are exactly the out-of-image neighbours, whose weight the caller has zeroed.
    """
    pad = kernel_size // 2
    n = h * w
    for k in range(kernel_size * kernel_size):
        off = (k // kernel_size - pad) * w + (k % kernel_size - pad)
        lo, hi = max(0, -off), min(n, n - off)
        if hi > lo:
            yield k, lo, hi, off


def _mul_into(dst: Tensor, a: Tensor, b: Tensor) -> None:
    """dst = a * b, in place. A strided dst (a channels_last activation's grouped view) is filled
    with copy + multiply: ``torch.compile`` refuses a non-contiguous ``out=``."""
    if dst.is_contiguous():
        torch.mul(a, b, out=dst)
    else:
        dst.copy_(b).mul_(a)


def _forward_flat(attn_masked: Tensor, value: Tensor, kernel_size: int) -> Tensor:
    b, c, h, w = value.shape
    g = attn_masked.shape[1]
    v = value.view(b, g, c // g, h * w)
    a = attn_masked.unsqueeze(2)  # (B, G, 1, KK, HW)
    out = torch.empty_like(value)
    o = out.view(b, g, c // g, h * w)
    centre = kernel_size * kernel_size // 2
    _mul_into(o, a[:, :, :, centre], v)  # the centre covers every pixel: initialises out
    for k, lo, hi, off in _flat_shifts(kernel_size, h, w):
        if k != centre:
            o[..., lo:hi].addcmul_(a[:, :, :, k, lo:hi], v[..., lo + off : hi + off])
    return out


def _grad_value_flat(attn_masked: Tensor, grad_out: Tensor, kernel_size: int) -> Tensor:
    b, c, h, w = grad_out.shape
    g = attn_masked.shape[1]
    go = grad_out.view(b, g, c // g, h * w)
    a = attn_masked.unsqueeze(2)
    grad = torch.empty_like(grad_out)
    gv = grad.view(b, g, c // g, h * w)
    centre = kernel_size * kernel_size // 2
    _mul_into(gv, a[:, :, :, centre], go)
    for k, lo, hi, off in _flat_shifts(kernel_size, h, w):
        if k != centre:
            gv[..., lo + off : hi + off].addcmul_(a[:, :, :, k, lo:hi], go[..., lo:hi])
    return grad


def _grad_attn_flat(value: Tensor, grad_out: Tensor, groups: int, kernel_size: int) -> Tensor:
    """Unmasked d/d(attn): per offset, a reduction over the group's channels."""
    b, c, h, w = value.shape
    v = value.view(b, groups, c // groups, h * w)
    go = grad_out.view(b, groups, c // groups, h * w)
    grad = value.new_zeros((b, groups, kernel_size * kernel_size, h * w))
    # (the product of two views laid out like value is laid out like value: no strided reads)
    for k, lo, hi, off in _flat_shifts(kernel_size, h, w):
        grad[:, :, k, lo:hi] = (go[..., lo:hi] * v[..., lo + off : hi + off]).sum(dim=2)
    return grad


def _forward_rect(attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> Tensor:
    b, c, h, w = value.shape
    g, _, ho, wo = attn.shape[1:]
    v = value.view(b, g, c // g, h, w)
    a = attn.unsqueeze(2)
    out = torch.empty((b, c, ho, wo), dtype=value.dtype, device=value.device,
                      memory_format=_memory_format(value))
    o = out.view(b, g, c // g, ho, wo)
    centre = kernel_size * kernel_size // 2
    # the centre neighbour is in the image for every output pixel, whatever the stride
    _mul_into(o, a[:, :, :, centre], v[..., ::stride, ::stride])
    for k, oy, ox, iy, ix in _windows(kernel_size, stride, h, w, ho, wo):
        if k != centre:
            o[..., oy, ox].addcmul_(a[:, :, :, k, oy, ox], v[..., iy, ix])
    return out


def _grad_value_rect(attn: Tensor, grad_out: Tensor, kernel_size: int, stride: int, h: int, w: int) -> Tensor:
    b, c, ho, wo = grad_out.shape
    g = attn.shape[1]
    go = grad_out.view(b, g, c // g, ho, wo)
    a = attn.unsqueeze(2)
    grad = grad_out.new_zeros((b, c, h, w)).contiguous(memory_format=_memory_format(grad_out))
    gv = grad.view(b, g, c // g, h, w)
    for k, oy, ox, iy, ix in _windows(kernel_size, stride, h, w, ho, wo):
        gv[..., iy, ix].addcmul_(a[:, :, :, k, oy, ox], go[..., oy, ox])
    return grad


def _grad_attn_rect(value: Tensor, grad_out: Tensor, groups: int, kernel_size: int, stride: int) -> Tensor:
    b, c, h, w = value.shape
    ho, wo = grad_out.shape[-2:]
    v = value.view(b, groups, c // groups, h, w)
    go = grad_out.view(b, groups, c // groups, ho, wo)
    grad = value.new_zeros((b, groups, kernel_size * kernel_size, ho, wo))
    for k, oy, ox, iy, ix in _windows(kernel_size, stride, h, w, ho, wo):
        grad[:, :, k, oy, ox] = (go[..., oy, ox] * v[..., iy, ix]).sum(dim=2)
    return grad


def _viewable(t: Tensor) -> Tensor:
    """``t`` if it is NCHW- or channels_last-contiguous (so the flat/grouped views work), else a copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


class LocalWeightedSum(torch.autograd.Function):
    """out[b, g*Cg + c, p] = sum_k attn[b, g, k, p] * value_zero_padded[b, g*Cg + c, p*stride + delta_k].

    The class name is what a ``torch.jit.trace`` graph shows (see LOCAL_WEIGHTED_SUM_OP_NAME).
    No double backward.
    """

    @staticmethod
    def forward(ctx, attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> Tensor:  # type: ignore[override]
        if torch.jit.is_tracing():
            # a trace records this op as one opaque node and reruns it on real shapes, so the
            # tracer's warnings about our Python shape arithmetic do not apply
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                return LocalWeightedSum._forward(ctx, attn, value, kernel_size, stride)
        return LocalWeightedSum._forward(ctx, attn, value, kernel_size, stride)

    @staticmethod
    def _forward(ctx, attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> Tensor:
        value = _viewable(value)
        b, g, kk, ho, wo = attn.shape
        h, w = value.shape[-2:]
        ctx.kernel_size, ctx.stride, ctx.hw = kernel_size, stride, (h, w)
        if stride == 1:
            # zero the weights of out-of-image neighbours once; both passes then run on flat views
            # (reshape: a view of attn in whatever dense layout it has, e.g. from channels_last)
            masked = attn.reshape(b, g, kk, h * w) * _flat_valid(kernel_size, h, w, attn)
            ctx.save_for_backward(masked, value)
            return _forward_flat(masked, value, kernel_size)
        ctx.save_for_backward(attn, value)
        return _forward_rect(attn, value, kernel_size, stride)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        attn, value = ctx.saved_tensors
        k, stride, (h, w) = ctx.kernel_size, ctx.stride, ctx.hw
        b, g = attn.shape[:2]
        grad_out = grad_out.contiguous(memory_format=_memory_format(value))
        grad_attn = grad_value = None
        if stride == 1:
            if ctx.needs_input_grad[0]:
                grad_attn = _grad_attn_flat(value, grad_out, g, k)
                grad_attn.mul_(_flat_valid(k, h, w, grad_attn))
                grad_attn = grad_attn.view(b, g, k * k, h, w)
            if ctx.needs_input_grad[1]:
                grad_value = _grad_value_flat(attn, grad_out, k)
        else:
            if ctx.needs_input_grad[0]:
                grad_attn = _grad_attn_rect(value, grad_out, g, k, stride)
            if ctx.needs_input_grad[1]:
                grad_value = _grad_value_rect(attn, grad_out, k, stride, h, w)
        return grad_attn, grad_value, None, None


#: ``kernel`` of ``local_weighted_sum``: the fused C kernel where it applies, always, or never
KERNELS = ("auto", "fused", "shifted")


def local_weighted_sum(
    attn: Tensor, value: Tensor, kernel_size: int, stride: int, kernel: str = "auto"
) -> Tensor:
    """Weight each output pixel's K x K zero-padded neighbourhood of ``value`` by ``attn``.

    attn (B, G, K*K, Ho, Wo), value (B, C, H, W) with C % G == 0 -> (B, C, Ho, Wo), in
    ``value``'s memory format. Same maths as ``unfold_weighted_sum`` without its K*K-times
    larger intermediate, in both forward and backward. ``attn`` and ``value`` must share a dtype.

    ``kernel="auto"`` runs the ``strabench::local_weighted_sum`` operator (its C kernel: CPU,
    float32/64, stride 1, NCHW or channels_last) where it applies and the kernels are loaded, else
    the op-per-pass ("shifted") PyTorch version; ``"fused"`` insists on the operator (ValueError
    where it does not apply), ``"shifted"`` never uses it. Inside ``ops.decomposed()`` (an
    exporter tracing) it is the traceable pad / slice / multiply / add form.
    """
    _check_args(attn, value, kernel_size, stride)
    if attn.dtype != value.dtype:
        raise ValueError(f"attn dtype {attn.dtype} differs from value dtype {value.dtype}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if ops.decomposing():
        from strabench.layers._local_traceable import traceable_weighted_sum

        return traceable_weighted_sum(attn, value, kernel_size, stride)
    fused = kernel != "shifted" and stride == 1 and ops.kernel_fits(value, channels_last=True)
    if kernel == "fused" and not fused:
        raise ValueError(
            f"the fused local attention kernel does not run a {value.device.type} {value.dtype} "
            f"input with stride {stride} here ({_local_kernel.status()}); use kernel='auto'"
        )
    if fused:
        b, g, kk = attn.shape[:3]
        h, w = value.shape[-2:]
        # zero the weights of out-of-image neighbours (the kernel reads flat shifts that wrap rows there)
        masked = (attn.reshape(b, g, kk, h * w) * flat_valid(kernel_size, h, w, attn)).contiguous()
        return ops.local_weighted_sum(masked, value, kernel_size)
    return LocalWeightedSum.apply(attn, value, kernel_size, stride)

"""Grouped 1x1 convolutions as batched matrix products, where that is what runs fast.

StRA's blocks are built from grouped 1x1 convolutions (the value projection, the logit and mask
branches: G = 8 groups). On the CPU in NCHW, oneDNN spends 30-70 us on each of them at batch 1
whatever its size, and is 2-4x slower than a batched matmul on the narrowing ones (512 -> 128,
512 -> 64, 128 -> 80, 64 -> 8 channels) at every batch up to 32, forward and backward (2 cores
of an AMD EPYC, torch 2.14 / oneDNN, 16x8 maps). On the square 512 -> 512 value projection the
two tie from batch 2 to 16 and oneDNN wins at 32. So a grouped 1x1 conv runs as one
``torch.matmul`` of the (G, out/G, in/G) weight with the (B, G, in/G, H*W) input when the input
is small (``SMALL_PIXELS``) or the conv narrows. In channels_last oneDNN is fast, so there the
module runs as it is. The choice changes speed only: outputs and gradients are the module's.

``pointwise_conv(conv, x)`` is ``conv(x)`` with the same parameters, outputs and gradients (up to
float rounding of a different summation order). It calls the module itself whenever something
observes it: forward hooks (ptflops and the paper's counter hook every conv), a
``torch.jit.trace`` (fvcore), ``torch.compile`` / ``torch.export`` / ONNX export, so every
counter and exporter sees a stock ``Conv2d``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

__all__ = ["capturing", "pointwise_conv", "run_branch"]


def capturing() -> bool:
    """Whether a ``torch.jit`` trace or script, ``torch.compile`` / ``torch.export`` or an ONNX
    export is recording this call: they must see the stock modules."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())


def _observed(conv: nn.Conv2d) -> bool:
    return bool(
        conv._forward_hooks or conv._forward_pre_hooks
        or _module._global_forward_hooks or _module._global_forward_pre_hooks
        or capturing()
    )


#: Up to this many pixels (B*H*W: batch 2 of StRA's 16x8 layer4 maps) every grouped 1x1 conv runs
#: as a matmul; above it only the narrowing ones (fewer outputs than inputs: the logit and mask
#: branches), where oneDNN loses at every batch. Timings behind both rules: the module docstring.
SMALL_PIXELS = 256


def _as_matmul(conv: nn.Conv2d, x: Tensor) -> bool:
    if x.dim() != 4:
        return False
    small = x.shape[0] * x.shape[2] * x.shape[3] <= SMALL_PIXELS
    return (
        (small or conv.out_channels < conv.in_channels)
        and x.device.type == "cpu" and x.is_contiguous() and conv.groups > 1
        and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
        and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and x.shape[1] == conv.in_channels
        and not _observed(conv)
    )


def pointwise_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)``; a grouped 1x1 conv on an NCHW CPU tensor runs as one batched matmul."""
    if not _as_matmul(conv, x):
        return conv(x)
    b, c, h, w = x.shape
    g = conv.groups
    weight = conv.weight.view(g, conv.out_channels // g, c // g)
    y = torch.matmul(weight, x.view(b, g, c // g, h * w))  # (B, G, out/G, H*W)
    if conv.bias is not None:
        y = y + conv.bias.view(g, -1, 1).to(y.dtype)  # under autocast the product is already low precision
    return y.view(b, conv.out_channels, h, w)


def run_branch(branch: nn.Sequential, x: Tensor) -> Tensor:
    """``branch(x)`` with its grouped 1x1 convs through ``pointwise_conv``."""
    for layer in branch:
        x = pointwise_conv(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)
    return x

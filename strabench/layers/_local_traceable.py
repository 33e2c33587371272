"""``local_weighted_sum`` from plain tensor ops, for graph capture (ONNX export, torch.compile).

``LocalWeightedSum`` (the fast kernel) is a Python autograd Function whose forward writes into
preallocated buffers with in-place ``addcmul_`` on views: an ONNX exporter sees one opaque
Python node it cannot translate, and a compiler gains nothing from tracing its loops. This is
the same maths in ops every exporter and compiler knows: zero-pad ``value`` once, then per
window offset one strided slice, one multiply and one add (ONNX ``Pad``, ``Slice``, ``Mul``,
``Add``). Autograd derives the backward, so it also serves compiled training.

Conventions are ``strabench.layers._local_ops``'s (odd K, padding K // 2, offsets row-major
over the window, one weight per (group, offset) for the group's channels). Out-of-image
neighbours read the zero padding, so their weight never matters, as in the fast kernel.
Unlike the fast kernel it holds one padded copy of ``value`` plus the K*K products while
autograd keeps them, which is fine for a compiler (it fuses them) and for an exporter (no
autograd at all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from strabench.layers._window import output_size

__all__ = ["traceable_gather_neighbours", "traceable_neighbour_windows", "traceable_weighted_sum"]


def traceable_weighted_sum(attn: Tensor, value: Tensor, kernel_size: int, stride: int) -> Tensor:
    """out[b, g*Cg + c, i, j] = sum_k attn[b, g, k, i, j] * value_zero_padded[b, g*Cg + c, i*s + dy_k, j*s + dx_k].

    attn (B, G, K*K, Ho, Wo), value (B, C, H, W) with C % G == 0 -> (B, C, Ho, Wo). Only the
    group and window sizes are read from shapes (the batch stays symbolic, so an export can
    make it dynamic).
    """
    groups, kk, ho, wo = attn.shape[1], attn.shape[2], attn.shape[3], attn.shape[4]
    channels = value.shape[1]
    pad = kernel_size // 2
    padded = F.pad(value, (pad, pad, pad, pad)) if pad else value
    padded = padded.unflatten(1, (groups, channels // groups))  # (B, G, Cg, H + 2p, W + 2p)
    span_y, span_x = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    out = None
    for k in range(kk):
        dy, dx = divmod(k, kernel_size)  # offset + K // 2, i.e. the row/column in the padded window
        window = padded[:, :, :, dy : dy + span_y : stride, dx : dx + span_x : stride]
        term = attn[:, :, k : k + 1] * window  # (B, G, 1, Ho, Wo) * (B, G, Cg, Ho, Wo)
        out = term if out is None else out + term
    assert out is not None  # kk >= 1
    return out.flatten(1, 2)


def traceable_neighbour_windows(t: Tensor, kernel_size: int, stride: int, fill: float) -> Tensor:
    """``neighbour_windows`` (``out[b, g, ky, kx, i, j] = t[b, g, i*s + ky - K//2, j*s + kx - K//2]``,
    ``fill`` outside) from pad + strided slices + stack: ``Tensor.unfold`` has no ONNX
    translation when the exporter cannot see the padded input's size."""
    pad = kernel_size // 2
    ho, wo = output_size(t.shape[-2], kernel_size, stride), output_size(t.shape[-1], kernel_size, stride)
    padded = F.pad(t, (pad, pad, pad, pad), value=fill) if pad else t
    span_y, span_x = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    rows = [
        torch.stack([padded[..., ky : ky + span_y : stride, kx : kx + span_x : stride] for kx in range(kernel_size)], dim=2)
        for ky in range(kernel_size)
    ]
    return torch.stack(rows, dim=2)  # (B, G, K, K, Ho, Wo)


def traceable_gather_neighbours(t: Tensor, kernel_size: int, stride: int, fill: float) -> Tensor:
    """``gather_neighbours``: ``traceable_neighbour_windows`` with the offsets flattened row-major."""
    return traceable_neighbour_windows(t, kernel_size, stride, fill).flatten(2, 3)

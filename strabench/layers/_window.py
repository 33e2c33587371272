"""The geometry of a K x K window with padding K // 2, shared by every local-attention path.

Conventions (``LocalAttention``, the kernels, the tests' references): K is odd, an output pixel
p reads input pixel ``p * stride + (dy, dx)``, offsets are numbered row-major over the window,
``k = (dy + K // 2) * K + (dx + K // 2)``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["flat_valid", "output_size"]


def output_size(size: int, kernel_size: int, stride: int) -> int:
    """Output length of a K-window with padding K // 2 (same as ``nn.Conv2d(..., padding=K//2)``)."""
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


@functools.lru_cache(maxsize=64)
def _flat_valid_cached(kernel_size: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in autograd later
        d = torch.arange(kernel_size, device=device) - kernel_size // 2
        ys = torch.arange(h, device=device) + d[:, None]  # (K, H)
        xs = torch.arange(w, device=device) + d[:, None]  # (K, W)
        vy = (ys >= 0) & (ys < h)
        vx = (xs >= 0) & (xs < w)
        valid = vy[:, None, :, None] & vx[None, :, None, :]  # (K, K, H, W)
        return valid.reshape(kernel_size * kernel_size, h * w).to(dtype).contiguous()


def flat_valid(kernel_size: int, h: int, w: int, like: Tensor) -> Tensor:
    """(K*K, H*W) 1/0 mask, contiguous: is the k-th neighbour of flat pixel p inside the image
    (stride 1). A constant of the shape, built once per (K, H, W, device, dtype) and reused: at
    batch 1 its dozen small ops would otherwise cost as much as the weighting itself."""
    return _flat_valid_cached(kernel_size, h, w, like.device, like.dtype)

"""Local attention of Structure-Regularized Attention (StRA), paper Eq. 2.

A conv-replacing block: it takes the place of a 3x3 conv (in StRA-ResNet-50, ``conv2`` of the
three layer4 bottlenecks) and mixes each pixel's K x K neighbourhood with weights predicted
from the input instead of learned per offset:

    logit[g, k](p) = omega[g, k](p) + nu[g](p*stride + delta_k)
    a[g, :](p)     = softmax_k(logit[g, :](p))
    out_g(p)       = sum_k a[g, k](p) * u_g(p*stride + delta_k)

u is a grouped 1x1 conv of x; omega (G*K*K maps) and nu (G maps) come from one grouped branch.
Shapes, widths and the two fixes to the authors' release (per-group output layout; stride and
any C divisible by G) follow docs/stra.md.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from strabench.counting import counts_macs
from strabench.errors import ShapeError
from strabench.layers import _local_fast
from strabench.layers._local_ops import (
    LOCAL_WEIGHTED_SUM_OP_NAME,
    local_attention_macs,
    local_weighted_sum,
    local_weighted_sum_jit_macs,
    neighbour_windows,
    output_size,
    unfold_weighted_sum,
)
from strabench.layers._pointwise import pointwise_conv, run_branch

__all__ = ["LocalAttention"]

_BORDERS = ("zero", "mask")
_IMPLS = ("auto", "fused", "shifted", "unfold")


def _own_macs(m: "LocalAttention", x: Tensor, out: Tensor) -> int:
    """omega + nu and the softmax over K*K (1 per logit each), then the weighting."""
    b, c, ho, wo = out.shape
    logits = b * m.groups * m.kernel_size**2 * ho * wo
    return 2 * logits + local_attention_macs(b, c, m.groups, m.kernel_size, ho, wo)


@counts_macs(_own_macs, fvcore={LOCAL_WEIGHTED_SUM_OP_NAME: local_weighted_sum_jit_macs}, multiply_adds=True)
class LocalAttention(nn.Module):
    """StRA local attention (Eq. 2): a softmax-weighted K x K neighbourhood sum, G weight maps.

    ``border="zero"`` (what the paper's numbers used) treats out-of-image neighbours like zero
    padding: their nu is 0 and their value is 0, but they still take part in the softmax.
    ``border="mask"`` leaves them out of the softmax. The weighting: ``impl="auto"`` runs the
    fused C kernel where it applies (CPU, float32/64, stride 1) and the op-per-pass PyTorch
    version elsewhere; ``"fused"`` and ``"shifted"`` force one of the two (``local_weighted_sum``);
    ``"unfold"`` is the authors' straightforward (slow) weighting, kept for comparison. With
    ``"auto"`` or ``"fused"`` a contiguous NCHW CPU input that nothing observes runs the whole
    block fused (``_local_fast``: same outputs, gradients and BN statistics).
    """

    block_kind = "replace"  # takes a convolution's place (strabench.models.blocks)

    def __init__(
        self,
        channels: int,
        *,
        groups: int = 8,
        kernel_size: int = 3,
        stride: int = 1,
        border: Literal["zero", "mask"] = "zero",
        impl: Literal["auto", "fused", "shifted", "unfold"] = "auto",
    ) -> None:
        super().__init__()
        if groups < 1 or channels < 1 or channels % groups != 0:
            raise ValueError(
                f"LocalAttention needs channels divisible by groups, got channels={channels}, groups={groups}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"LocalAttention needs an odd kernel_size >= 1, got {kernel_size}")
        if stride < 1:
            raise ValueError(f"LocalAttention needs stride >= 1, got {stride}")
        if border not in _BORDERS:
            raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        if impl == "fused" and stride != 1:
            raise ValueError(f"impl='fused' runs stride 1 only, got stride={stride} (impl='auto' picks for you)")
        self.channels = channels
        self.groups = groups
        self.kernel_size = kernel_size
        self.stride = stride
        self.border = border
        self.impl = impl
        kk = kernel_size * kernel_size
        hidden = max(groups, -(-(channels // 4) // groups) * groups)  # C/4 rounded up to a multiple of G
        self.value = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)
        # output channels per group: [omega[g, 0..K*K-1], nu[g]], so a group's logits only see its channels
        self.branch = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, groups=groups, bias=True),
            nn.BatchNorm2d(hidden),
            nn.Tanh(),
            nn.Conv2d(hidden, groups * (kk + 1), 1, groups=groups, bias=True),
            nn.BatchNorm2d(groups * (kk + 1)),
        )

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, groups={self.groups}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, border={self.border!r}, impl={self.impl!r}"
        )

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing():  # sizes are traced tensors there; tracing runs on a checked example
            return
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] < 1 or x.shape[3] < 1:
            raise ShapeError(
                f"LocalAttention({self.channels}) expects input (B, {self.channels}, H>=1, W>=1), "
                f"got {tuple(x.shape)}"
            )

    def _attention(self, x: Tensor) -> Tensor:
        g, k, s = self.groups, self.kernel_size, self.stride
        kk = k * k
        logits = run_branch(self.branch, x).unflatten(1, (g, kk + 1))  # (B, G, KK+1, H, W), in x's layout
        omega = logits[:, :, :kk, ::s, ::s].unflatten(2, (k, k))  # at the query pixels: (B, G, K, K, Ho, Wo)
        fill = 0.0 if self.border == "zero" else float("-inf")
        nu = neighbour_windows(logits[:, :, kk], k, s, fill)  # at the neighbours, a broadcast view
        logit = (omega + nu).flatten(2, 3)  # (B, G, KK, Ho, Wo)
        # softmax re-lays a channels_last-derived logit out row-major first (a copy of G*K*K maps
        # per pixel, not of the activation): still far faster than its kernel for a last dim of 9
        if logit.dtype in (torch.float16, torch.bfloat16):
            return torch.softmax(logit, dim=2, dtype=torch.float32)
        return torch.softmax(logit, dim=2)

    def attention(self, x: Tensor) -> Tensor:
        """The softmax weights a, shape (B, G, K*K, Ho, Wo); offsets row-major over the window."""
        self._check_input(x)
        return self._attention(x)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(Ho, Wo) for an input of ``height`` x ``width`` (same as a K x K conv, padding K // 2)."""
        return output_size(height, self.kernel_size, self.stride), output_size(width, self.kernel_size, self.stride)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if _local_fast.applies(self, x):
            return _local_fast.forward(self, x)
        u = pointwise_conv(self.value, x)
        a = self._attention(x).to(u.dtype)
        if self.impl == "unfold":
            return unfold_weighted_sum(a, u, self.kernel_size, self.stride)
        return local_weighted_sum(a, u, self.kernel_size, self.stride, kernel=self.impl)

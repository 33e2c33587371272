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
from strabench.layers import ops
from strabench.layers._local_ops import (
    LOCAL_WEIGHTED_SUM_OP_NAME,
    local_attention_macs,
    local_weighted_sum,
    local_weighted_sum_jit_macs,
    neighbour_windows,
    output_size,
    unfold_weighted_sum,
)
from strabench.layers._inference import check_inference, conv_tensors, eval_norm, norm_tensors, plain_pointwise
from strabench.layers.pointwise import GroupedPointwiseConv

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
    ``border="mask"`` leaves them out of the softmax.

    How it runs (docs/kernels.md): its layers are modules, called as modules (the grouped 1x1
    convs are ``GroupedPointwiseConv``s). With ``impl="auto"`` (and ``kernels`` "fused", the
    default) the attention from the logits (omega + nu, softmax, weighting) is the
    ``strabench::local_attention`` operator for a contiguous NCHW float32/float64 CPU input at
    stride 1; in channels_last the softmax is torch's and the weighting the
    ``strabench::local_weighted_sum`` operator; elsewhere (CUDA, other dtypes, stride 2) plain
    torch ops with an op-per-pass weighting. ``impl="fused"`` insists on the C kernels (an error
    where they do not apply), ``"shifted"`` always runs the op-per-pass weighting, and
    ``"unfold"`` the authors' straightforward (slow) weighting, kept for comparison. ``kernels``
    is set by ``strabench.layers.kernels.use_kernels`` ("stock": plain torch ops) and
    ``fuse_for_inference`` ("inference": the whole block as one ``strabench::local_attention_infer``
    call in eval mode).
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
        self.value = GroupedPointwiseConv(channels, channels, groups=groups, bias=False)
        # output channels per group: [omega[g, 0..K*K-1], nu[g]], so a group's logits only see its channels
        self.branch = nn.Sequential(
            GroupedPointwiseConv(channels, hidden, groups=groups, bias=True),
            nn.BatchNorm2d(hidden),
            nn.Tanh(),
            GroupedPointwiseConv(hidden, groups * (kk + 1), groups=groups, bias=True),
            nn.BatchNorm2d(groups * (kk + 1)),
        )
        self.kernels = "fused"  # "stock" | "fused" | "inference": strabench.layers.kernels

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

    def _weights(self, logits: Tensor) -> Tensor:
        """The softmax weights (B, G, K*K, Ho, Wo) from the branch's output, in plain torch ops."""
        g, k, s = self.groups, self.kernel_size, self.stride
        kk = k * k
        logits = logits.unflatten(1, (g, kk + 1))  # (B, G, KK+1, H, W), in x's layout
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
        return self._weights(self.branch(x))

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(Ho, Wo) for an input of ``height`` x ``width`` (same as a K x K conv, padding K // 2)."""
        return output_size(height, self.kernel_size, self.stride), output_size(width, self.kernel_size, self.stride)

    def fusible(self) -> bool:
        """Whether ``fuse_for_inference`` can make this block one call: its branch is grouped 1x1 conv,
        eval-mode BN, tanh, grouped 1x1 conv, eval-mode BN (what ``strabench::local_attention_infer``
        computes), at stride 1."""
        branch = list(self.branch)
        return (
            self.stride == 1 and not self.training and self.impl in ("auto", "fused") and len(branch) == 5
            and all(plain_pointwise(c, self.groups) for c in (self.value, branch[0], branch[3]))
            and type(branch[2]) is nn.Tanh and eval_norm(branch[1]) and eval_norm(branch[4])
        )

    def _infer_args(self) -> list:
        mods = self._modules
        branch = list(mods["branch"]._modules.values())
        return [
            self.kernel_size, self.border == "mask", self.groups, *conv_tensors(mods["value"]), *conv_tensors(branch[0]),
            *conv_tensors(branch[3]), *norm_tensors(branch[1]), *norm_tensors(branch[4]),
        ]

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self.kernels == "inference":
            check_inference(self, x)
            return ops.local_attention_infer(x, *self._infer_args())
        u = self.value(x)
        logits = self.branch(x)
        fused = self.kernels == "fused" and self.impl in ("auto", "fused") and self.stride == 1
        if fused and ops.kernel_fits(u, logits):
            return ops.local_attention(logits, u, self.kernel_size, self.border == "mask")[0]
        a = self._weights(logits).to(u.dtype)
        if self.impl == "unfold":
            return unfold_weighted_sum(a, u, self.kernel_size, self.stride)
        kernel = "shifted" if not fused else ("fused" if self.impl == "fused" else "auto")
        return local_weighted_sum(a, u, self.kernel_size, self.stride, kernel=kernel)


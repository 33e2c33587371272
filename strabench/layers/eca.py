"""Efficient Channel Attention (ECA-Net; Wang, Wu, Zhu, Li, Zuo, Hu, CVPR 2020).

An add-on block, placed like SE (after bn3 of every bottleneck, before the residual add). It
gates channels from global context as SE does, but without SE's bottleneck MLP: a 1-D
convolution of kernel size k slides over the pooled channel descriptor (Eq. 4, "local
cross-channel interaction"), so it adds only k weights per block:

    y = avgpool(x)                       (B, C)
    w = sigmoid(conv1d_k(y))             one shared kernel, no bias, zero padding (k - 1) / 2
    out = x * w

k is chosen from C (Eq. 12): k = |log2(C) / gamma + b / gamma|_odd with gamma = 2, b = 1, where
|t|_odd is the odd number nearest t (the authors' code: ``int(abs(...))``, +1 if even).

The block declares its own arithmetic (the ``x * w`` gate) for the counters, next to the class.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from strabench.counting import counts_macs

__all__ = ["ECA", "eca_kernel_size"]


def eca_kernel_size(channels: int, *, gamma: int = 2, b: int = 1) -> int:
    """Eq. 12, as the authors' release computes it: ``t = int(|log2(C) + b| / gamma)``, odd-ised."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _own_macs(m: "ECA", x: Tensor, out: Tensor) -> int:
    return x.numel()  # x * gate: one per element (pool, conv1d and sigmoid are child modules)


@counts_macs(_own_macs)
class ECA(nn.Module):
    """ECA channel attention: x * sigmoid(conv1d_k(avgpool(x))) with k from C (Eq. 12) unless given."""

    block_kind = "insert"  # follows a module, which stays (strabench.models.blocks)

    def __init__(self, channels: int, *, kernel_size: int | None = None, gamma: int = 2, b: int = 1) -> None:
        super().__init__()
        k = kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma=gamma, b=b)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel_size must be a positive odd number, got {k}")
        self.channels, self.kernel_size = channels, k
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        y = self.pool(x).flatten(1).unsqueeze(1)  # (B, 1, C): channels are the 1-D sequence
        w = self.gate(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
        return x * w

"""Non-local block, embedded Gaussian version (Wang, Girshick, Gupta, He, CVPR 2018, Eq. 1-3).

y = softmax(theta(x)^T phi(x)) g(x); z = BN(W y) + x. theta/phi/g are 1x1 convs to C/2
channels; phi and g are 2x2 max-pooled ("subsampling trick", Sec. 3.3); W's BN starts with
gamma = 0 so the block is the identity at initialisation, as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from strabench.counting import counts_macs


def _own_macs(m: "NonLocal", x: Tensor, out: Tensor) -> int:
    b, c, h, w = x.shape
    n = h * w
    pooled = type(m.pool).forward(m.pool, torch.empty(1, 1, h, w, device="meta"))  # no hooks fire
    keys = pooled.shape[-1] * pooled.shape[-2]
    inner = m.theta.out_channels
    # theta.phi and attn.g (matmuls), softmax over the keys, residual add
    return 2 * b * n * keys * inner + b * n * keys + b * c * n


@counts_macs(_own_macs)
class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection (an add-on block)."""

    block_kind = "insert"  # follows a module, which stays (strabench.models.blocks)

    def __init__(self, channels: int, *, reduction: int = 2, subsample: bool = True) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if subsample else nn.Identity()
        self.out = nn.Conv2d(inner, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.pool(self.phi(x)).flatten(2)  # (B, C', N)
        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, N, C')
        attn = (theta @ phi).softmax(dim=-1)  # (B, HW, N)
        y = (attn @ g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.bn(self.out(y))

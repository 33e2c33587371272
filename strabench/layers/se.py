"""Squeeze-and-Excitation (Hu, Shen, Sun, CVPR 2018): channel gating from global context.

An add-on block: in SE-ResNet it follows bn3 of every bottleneck, before the residual add.
"""

from __future__ import annotations

from torch import Tensor, nn

from strabench.counting import counts_macs


def _own_macs(m: "SqueezeExcite", x: Tensor, out: Tensor) -> int:
    return x.numel()  # x * gate


@counts_macs(_own_macs)
class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 avgpool(x))), reduction ``reduction`` (16 in the SE paper)."""

    block_kind = "insert"  # follows a module, which stays (strabench.models.blocks)

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

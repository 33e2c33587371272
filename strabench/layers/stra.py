"""The Structure-Regularized Attention block (StRA paper, Fig. 1): local attention -> mode attention.

It replaces the 3x3 conv (``conv2``) of a bottleneck. The paper's Table 4 ablations put mode
attention after other spatial operators (conv, group conv, SASA); that is ``SpatialThenMode``,
a separate class, so a module named ``StRA`` is always local attention followed by mode attention.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from strabench.layers.local_attention import LocalAttention
from strabench.layers.mode_attention import ModeAttention

__all__ = ["SpatialThenMode", "StRA"]


class StRA(nn.Module):
    """Local attention (Eq. 2) followed by mode attention (Eq. 1/3).

    Args:
        channels: C (bottleneck width), divisible by ``groups``.
        groups: G, shared by the local attention heads and the modes (8 in the paper).
        kernel_size: local window K (3 in the paper).
        stride: spatial stride of the local attention (the mode attention keeps the size).
        interaction: mode interaction on (full StRA) or off (Table 3, "w/o interaction").
        border: local attention borders, "zero" (the paper's) or "mask".
    """

    block_kind = "replace"  # takes a convolution's place (strabench.models.blocks)

    def __init__(
        self,
        channels: int,
        *,
        groups: int = 8,
        kernel_size: int = 3,
        stride: int = 1,
        interaction: bool = True,
        border: Literal["zero", "mask"] = "zero",
    ) -> None:
        super().__init__()
        self.local = LocalAttention(channels, groups=groups, kernel_size=kernel_size, stride=stride, border=border)
        self.mode = ModeAttention(channels, groups=groups, interaction=interaction)

    def forward(self, x: Tensor) -> Tensor:
        return self.mode(self.local(x))


class SpatialThenMode(nn.Module):
    """Any spatial operator mapping C -> C (a 3x3 conv, a group conv, SASA), then mode attention:
    the paper's Table 4 rows "Conv + Mode", "Group Conv + Mode" and "SASA + Mode"."""

    def __init__(self, spatial: nn.Module, channels: int, *, groups: int = 8, interaction: bool = True) -> None:
        super().__init__()
        self.spatial = spatial
        self.mode = ModeAttention(channels, groups=groups, interaction=interaction)

    def forward(self, x: Tensor) -> Tensor:
        return self.mode(self.spatial(x))

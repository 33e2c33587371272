"""The Structure-Regularized Attention block (StRA paper, Fig. 1): local attention -> mode attention.

It replaces the 3x3 conv (``conv2``) of a bottleneck. ``spatial`` swaps the local attention
for another spatial operator, which is how the paper's Table 4 ablations (conv + mode,
group conv + mode, SASA + mode) are built from the same block.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from strabench.layers.local_attention import LocalAttention
from strabench.layers.mode_attention import ModeAttention


class StRA(nn.Module):
    """Local attention (Eq. 2) followed by mode attention (Eq. 1/3).

    Args:
        channels: C (bottleneck width), divisible by ``groups``.
        groups: G, shared by the local attention heads and the modes (8 in the paper).
        kernel_size: local window K (3 in the paper).
        stride: spatial stride of the local attention (the mode attention keeps the size).
        interaction: mode interaction on (full StRA) or off (Table 3, "w/o interaction").
        border: local attention borders, "zero" (the paper's) or "mask".
        spatial: replaces the local attention (must map C -> C with the given stride).
    """

    def __init__(
        self,
        channels: int,
        *,
        groups: int = 8,
        kernel_size: int = 3,
        stride: int = 1,
        interaction: bool = True,
        border: Literal["zero", "mask"] = "zero",
        spatial: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.local = spatial if spatial is not None else LocalAttention(
            channels, groups=groups, kernel_size=kernel_size, stride=stride, border=border
        )
        self.mode = ModeAttention(channels, groups=groups, interaction=interaction)

    def forward(self, x: Tensor) -> Tensor:
        return self.mode(self.local(x))

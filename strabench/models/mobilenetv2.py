"""MobileNetV2 (Sandler et al., CVPR 2018) for ReID: last stride 1 and the 512-d ReID head.

The inverted-residual body is torchvision's (so its state_dicts load by name, ``features.*``),
with the stride of the 160-channel stage set to 1 (output stride 16, a 16x8 map for 256x128).

Where StRA goes (not published by the paper, so our choice): it replaces the depthwise 3x3
conv of the LAST inverted-residual block (the 320-channel one, expanded width 960 at x1.0,
1344 at x1.4), followed by that block's BN and ReLU6, as StRA replaces the 3x3 of ResNet's
last stage. With this choice (paper convention, 256x128) x1.4 is 0.681 G and x1.4 + StRA
0.718 G (paper: 0.68 and 0.72 G); x1.0 + StRA is 0.369 G (paper 0.37 G) while our plain x1.0
is 0.351 G (paper 0.37 G). See the README's complexity table.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn
from torchvision.models.mobilenetv2 import MobileNetV2 as TVMobileNetV2

from strabench.models.base import TaskModel
from strabench.models.heads import ReIDHead

# t (expansion), c (channels), n (blocks), s (stride of the first block): torchvision's table with
# the 160-channel stage's stride removed ("last stride 1").
REID_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 1], [6, 320, 1, 1]]


class MobileNetV2(TaskModel):
    """MobileNetV2 body + ReID head; ``last_block_spatial`` swaps the last block's depthwise conv."""

    input_multiple = 16

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        last_block_spatial: Callable[[int], nn.Module] | None = None,
        feature_dim: int = 512,
        num_classes: int = 751,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        # input_size: taken as the ResNets take it (their builders share callers); the pooled head fits any size
        super().__init__()
        body = TVMobileNetV2(width_mult=width_mult, inverted_residual_setting=REID_SETTING)
        self.features = body.features
        if last_block_spatial is not None:
            last = self.features[-2]  # the 320-channel inverted residual (features[-1] is the 1x1 conv)
            depthwise = last.conv[1]  # Conv2dNormActivation(hidden, hidden, 3, groups=hidden)
            hidden = depthwise[0].in_channels
            last.conv[1] = nn.Sequential(last_block_spatial(hidden), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True))
        self.head = ReIDHead(body.last_channel, feature_dim)
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

"""One bottleneck ResNet for the three tasks; variants differ only in data.

A ``BlockPlan`` says, per stage, what replaces the 3x3 ``conv2`` of each bottleneck (a factory
``(width, stride) -> module``), which add-on follows ``bn3`` (SE), which blocks are followed by
a post-block (non-local), and whether ``conv3`` is kept. Module names follow torchvision's
ResNet (``conv1``, ``bn1``, ``layer1.0.conv2`` ...) so its state_dicts load by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal


from torch import Tensor, nn

from strabench.models.base import TaskModel
from strabench.models.heads import FaceHead, PoolHead, ReIDHead

SpatialFactory = Callable[[int, int], nn.Module]  # (width, stride) -> replaces conv2
AddonFactory = Callable[[int], nn.Module]  # (channels) -> applied after bn3, before the residual add


def conv3x3(width: int, stride: int) -> nn.Module:
    """The plain 3x3 convolution of a torchvision bottleneck (the paper's "Conv")."""
    return nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)


@dataclass(frozen=True)
class StagePlan:
    spatial: SpatialFactory = conv3x3
    addon: AddonFactory | None = None
    post_blocks: tuple[int, ...] = ()  # indices of blocks followed by ``post``
    post: AddonFactory | None = None
    keep_conv3: bool = True


@dataclass(frozen=True)
class BlockPlan:
    """What each of the four stages uses; the default is a plain ResNet."""

    stages: tuple[StagePlan, StagePlan, StagePlan, StagePlan] = field(
        default_factory=lambda: (StagePlan(), StagePlan(), StagePlan(), StagePlan())
    )

    @classmethod
    def uniform(cls, **kwargs) -> "BlockPlan":
        return cls(tuple(StagePlan(**kwargs) for _ in range(4)))  # type: ignore[arg-type]

    def with_stage(self, index: int, plan: StagePlan) -> "BlockPlan":
        stages = list(self.stages)
        stages[index] = plan
        return BlockPlan(tuple(stages))  # type: ignore[arg-type]


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3, "ResNet v1.5") with pluggable parts."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, plan: StagePlan, with_post: bool) -> None:
        super().__init__()
        width = planes
        out_channels = planes * self.expansion if plan.keep_conv3 else width
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = plan.spatial(width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False) if plan.keep_conv3 else nn.Identity()
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.addon = plan.addon(out_channels) if plan.addon else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.post = plan.post(out_channels) if (with_post and plan.post) else None
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.addon is not None:
            out = self.addon(out)
        out = self.relu(out + identity)
        return out if self.post is None else self.post(out)


class ResNet(TaskModel):
    """Bottleneck ResNet with a task head.

    Args:
        layers: blocks per stage, (3, 4, 6, 3) for ResNet-50.
        strides: stride of each stage; (1, 2, 2, 1) is ResNet-50 with the last stride removed.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "small" (3x3/1 conv, no pool).
        plan: what each stage's bottlenecks use (see ``BlockPlan``).
        head: "reid" (GAP -> 1x1 conv -> BN), "face" (BN-Dropout-FC-BN) or "pool" (GAP).
        input_size: (H, W) the model is meant for; fixes the face head's FC size.
        num_classes: size of the classifier (training-only for ReID and face).
        eval_output: what eval mode returns, "features" or "logits".
        zero_init_last: start every bottleneck's last BN at gamma = 0, so each residual block
            begins as the identity (Goyal et al. 2017; timm's default, torchvision's
            ``zero_init_residual``). Measured here: from scratch on ``synthetic_reid`` (quick
            profile) training loss starts falling in the first epoch instead of after ~10, and
            the untrained network's retrieval score sits near chance instead of reflecting
            random colour filters. The FER network turns it off (see ``zoo``). Pretrained
            weights overwrite it.
    """

    def __init__(
        self,
        *,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        strides: tuple[int, int, int, int] = (1, 2, 2, 1),
        stem: Literal["imagenet", "small"] = "imagenet",
        plan: BlockPlan | None = None,
        head: Literal["reid", "face", "pool"] = "reid",
        in_chans: int = 3,
        input_size: tuple[int, int] = (256, 128),
        feature_dim: int = 512,
        num_classes: int = 751,
        eval_output: Literal["features", "logits"] = "features",
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        plan = plan or BlockPlan()
        self.in_chans, self.eval_output = in_chans, eval_output
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
            stem_stride = 4
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
            stem_stride = 1
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 64
        stages = []
        for planes, blocks, stride, stage_plan in zip((64, 128, 256, 512), layers, strides, plan.stages):
            stage = []
            for i in range(blocks):
                block = Bottleneck(inplanes, planes, stride if i == 0 else 1, stage_plan, i in stage_plan.post_blocks)
                inplanes = block.out_channels
                stage.append(block)
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        output_stride = stem_stride * math.prod(strides)
        # The ReID head needs every stage to halve exactly; the face head is sized for one input
        # (``fixed_input``); the pooled FER head takes any size.
        self.input_multiple = output_stride if head == "reid" else 1
        out_hw = tuple(math.ceil(s / output_stride) for s in input_size)
        if head == "reid":
            self.head: nn.Module = ReIDHead(inplanes, feature_dim)
            self.feature_dim = feature_dim
        elif head == "face":
            self.head = FaceHead(inplanes, out_hw, feature_dim)  # type: ignore[arg-type]
            self.feature_dim = feature_dim
            self.fixed_input = tuple(input_size)  # type: ignore[assignment]
        else:
            self.head = PoolHead()
            self.feature_dim = inplanes
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)

    def stage_outputs(self, x: Tensor) -> list[Tensor]:
        """Feature maps after each stage (for visualisation and tests)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs



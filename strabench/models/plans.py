"""Factories that turn a variant's description into modules (imported only when a model is built)."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from strabench.layers.local_attention import LocalAttention
from strabench.layers.non_local import NonLocal
from strabench.layers.sasa import SASA
from strabench.layers.se import SqueezeExcite
from strabench.layers.stra import SpatialThenMode, StRA
from strabench.models.mobilenetv2 import MobileNetV2
from strabench.models.resnet import BlockPlan, ResNet, SpatialFactory, StagePlan, conv3x3

__all__ = ["BlockPlan", "MobileNetV2", "NonLocal", "ResNet", "StagePlan", "SqueezeExcite", "conv3x3"]


def layer4(spatial: SpatialFactory, **stage: Any) -> BlockPlan:
    """A plain ResNet whose layer4 bottlenecks take ``spatial`` in place of the 3x3 conv."""
    return BlockPlan().with_stage(3, StagePlan(spatial=spatial, **stage))


def stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", interaction: bool = True) -> SpatialFactory:
    return lambda width, stride: StRA(
        width, groups=groups, kernel_size=kernel_size, stride=stride, interaction=interaction, border=border  # type: ignore[arg-type]
    )


def local(groups: int = 8, kernel_size: int = 3, border: str = "zero") -> SpatialFactory:
    return lambda width, stride: LocalAttention(
        width, groups=groups, kernel_size=kernel_size, stride=stride, border=border  # type: ignore[arg-type]
    )


def with_mode(spatial: SpatialFactory, groups: int = 8) -> SpatialFactory:
    """``spatial`` followed by mode attention (with interaction): the Table 4 "X + Mode" rows."""
    return lambda width, stride: SpatialThenMode(spatial(width, stride), width, groups=groups)


def sasa(heads: int = 8, kernel_size: int = 7) -> SpatialFactory:
    return lambda width, stride: SASA(width, heads=heads, kernel_size=kernel_size, stride=stride)


def gconv(groups: int = 8) -> SpatialFactory:
    return lambda width, stride: nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)


def se(reduction: int = 16) -> Callable[[int], nn.Module]:
    return lambda channels: SqueezeExcite(channels, reduction=reduction)


def mnv2_stra(groups: int, kernel_size: int, border: str) -> Callable[[int], nn.Module]:
    return lambda width: StRA(width, groups=groups, kernel_size=kernel_size, border=border)  # type: ignore[arg-type]

"""Embedding heads of the three tasks (the classifier is separate and training-only)."""

from __future__ import annotations

from torch import Tensor, nn


class ReIDHead(nn.Module):
    """Global average pool -> 1x1 conv (no bias) -> BN -> D-d feature (StRA paper, App. B.1)."""

    def __init__(self, in_channels: int, feature_dim: int = 512) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(in_channels, feature_dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.reduce(self.pool(x))).flatten(1)


class FaceHead(nn.Module):
    """BN -> Dropout -> FC -> BN on the flattened final map (ArcFace's "E" output, App. B.2)."""

    def __init__(self, in_channels: int, spatial: tuple[int, int], feature_dim: int = 512, dropout: float = 0.4) -> None:
        super().__init__()
        self.bn_in = nn.BatchNorm2d(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels * spatial[0] * spatial[1], feature_dim)
        self.bn_out = nn.BatchNorm1d(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn_out(self.fc(self.dropout(self.bn_in(x)).flatten(1)))


class PoolHead(nn.Module):
    """Global average pool to a vector (the FER network feeds it straight to the classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x).flatten(1)

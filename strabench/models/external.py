"""The training contract for models that are not in the registry: features in, our classifier on top.

A ``torchvision:``, ``timm:`` or ``package.module:callable`` model is trained as a feature
extractor (``strabench.models.sources`` says how each source gives one): ``FeatureModel`` pools
its output to (B, D) and adds the training-only linear classifier, so it behaves like a
registered model (``TaskModel``): eval mode returns the features (ReID, face), training mode
returns ``ModelOutput`` with the logits and any auxiliary losses its blocks report.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from strabench.errors import ShapeError
from strabench.models.base import TaskModel


def pool_features(out: object, name: str) -> Tensor:
    """(B, D) as is; (B, D, H, W) averaged over H, W; (B, N, D) tokens averaged over N."""
    if not isinstance(out, Tensor):
        raise ShapeError(f"{name} must return one tensor of features, got {type(out).__name__}")
    if out.dim() == 2:
        return out
    if out.dim() == 4:
        return out.mean(dim=(2, 3))
    if out.dim() == 3:
        return out.mean(dim=1)
    raise ShapeError(f"{name} returned features of shape {tuple(out.shape)}; expected (B, D), (B, D, H, W) or (B, N, D)")


class FeatureModel(TaskModel):
    """A feature extractor from elsewhere + strabench's training-only linear classifier."""

    def __init__(
        self, backbone: nn.Module, *, name: str, num_classes: int, probe_size: tuple[int, int], in_chans: int = 3
    ) -> None:
        super().__init__()
        from strabench.usercode import calling

        self.backbone, self.name, self.in_chans = backbone, name, in_chans
        was_training = backbone.training
        probe = (in_chans, *probe_size)
        doing = (f"its feature probe at input {'x'.join(map(str, probe))}; if it takes another size, "
                 "declare it (default_input = (C, H, W) on the callable) or pass --input")
        try:
            with torch.no_grad(), calling(name, doing):  # the feature width, from one probe in eval mode (no BN statistics move)
                self.feature_dim = int(pool_features(backbone.eval()(torch.zeros(1, *probe)), name).shape[1])
        finally:
            backbone.train(was_training)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return pool_features(self.backbone(x), self.name)

"""Parameter counts in the paper's convention: every parameter except the training-only classifier."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module, *, include_classifier: bool = False) -> int:
    """Number of parameters (BN affine included), leaving out ``model.classifier`` by default."""
    skip = set()
    if not include_classifier and hasattr(model, "classifier"):
        skip = {id(p) for p in model.classifier.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)

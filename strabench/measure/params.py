"""Parameter counts in the paper's convention: every parameter except the training-only classifier."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module, *, include_classifier: bool = False) -> int:
    """Number of parameters (BN affine included), leaving out a strabench model's training-only
    classifier by default (a torchvision or timm model's ``classifier`` is part of the network)."""
    from strabench.measure.flops import training_classifier

    skip = set()
    classifier = training_classifier(model)
    if not include_classifier and classifier is not None:
        skip = {id(p) for p in classifier.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)

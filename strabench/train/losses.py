"""The training objective: cross-entropy on the classifier plus the model's weighted auxiliary losses.

All three tasks of the paper train with "only classification loss" (identities, face
identities or expressions) plus the diversity regulariser L_d of the StRA blocks, weighted 1.0
(ReID, FER) or 0.1 (face). The model hands its auxiliary losses back explicitly
(``ModelOutput.aux_losses``); an auxiliary loss the config has no weight for is an error, not a
silently ignored (or silently added) term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from strabench.errors import ConfigError

__all__ = ["LossParts", "aux_weights_for", "training_loss"]


class LossParts(NamedTuple):
    """``total`` is what is back-propagated; ``ce`` and ``aux`` (unweighted, per name) are for logs."""

    total: Tensor
    ce: Tensor
    aux: dict[str, Tensor]
    weighted_aux: Tensor


def aux_weights_for(diversity_weight: float) -> dict[str, float]:
    """Weights of the auxiliary losses a strabench model can return, from the config."""
    return {"diversity": float(diversity_weight)}


def training_loss(logits: Tensor, labels: Tensor, aux_losses: Mapping[str, Tensor], aux_weights: Mapping[str, float]) -> LossParts:
    """``CE(logits, labels) + sum_k w_k * aux_k``; computed in float32 even under autocast."""
    ce = F.cross_entropy(logits.float(), labels)
    weighted = ce.new_zeros(())
    for name, value in aux_losses.items():
        if name not in aux_weights:
            raise ConfigError(f"the model returned an auxiliary loss {name!r} that has no weight in the config")
        weighted = weighted + aux_weights[name] * value.float()
    return LossParts(ce + weighted, ce, {k: v.detach().float() for k, v in aux_losses.items()}, weighted.detach())


def finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())

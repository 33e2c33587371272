"""What every strabench model returns, and how auxiliary losses are handed back.

Training mode: ``model(x)`` returns a ``ModelOutput`` (features, logits from the
training-only classifier, and a dict of scalar auxiliary losses such as StRA's diversity loss).
Eval mode: ``model(x)`` returns one tensor: the embedding (ReID, face) or the logits (FER),
and no auxiliary loss is computed.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from strabench.errors import ShapeError


class ModelOutput(NamedTuple):
    features: Tensor
    logits: Tensor
    aux_losses: dict[str, Tensor]


def collect_aux_losses(model: nn.Module) -> dict[str, Tensor]:
    """Sum each auxiliary loss over the blocks that produced one, then average over the batch."""
    totals: dict[str, Tensor] = {}
    for module in model.modules():
        pop = getattr(module, "pop_aux_losses", None)
        if pop is None:
            continue
        for name, per_sample in pop().items():
            totals[name] = totals[name] + per_sample if name in totals else per_sample
    return {name: value.mean() for name, value in totals.items()}


class TaskModel(nn.Module):
    """Base of the registered models: a backbone + head giving features, and a classifier.

    Subclasses set ``in_chans``, ``input_multiple`` (H and W must be multiples of it),
    ``fixed_input`` (a size the head was built for, or None), ``feature_dim``,
    ``eval_output`` ("features" or "logits") and implement ``forward_features``.
    """

    in_chans: int = 3
    input_multiple: int = 1
    fixed_input: tuple[int, int] | None = None
    feature_dim: int
    eval_output: str = "features"
    classifier: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise ShapeError for an input shape (B, C, H, W) this model cannot take."""
        name = type(self).__name__
        if len(shape) != 4:
            raise ShapeError(f"{name} expects a 4-d input (B, C, H, W), got shape {tuple(shape)}")
        _, c, h, w = shape
        if c != self.in_chans:
            raise ShapeError(f"{name} expects {self.in_chans} input channel(s), got {c}")
        if self.fixed_input is not None and (h, w) != tuple(self.fixed_input):
            fh, fw = self.fixed_input
            raise ShapeError(f"{name} was built for {fh}x{fw} inputs (its head or blocks are sized for it), got {h}x{w}")
        m = self.input_multiple
        if h < m or w < m or h % m or w % m:
            raise ShapeError(f"{name} needs H and W to be positive multiples of {m} (its output stride), got {h}x{w}")

    def forward(self, x: Tensor) -> Tensor | ModelOutput:
        self.check_input(tuple(x.shape))
        features = self.forward_features(x)
        if not self.training:
            return self.classifier(features) if self.eval_output == "logits" else features
        return ModelOutput(features, self.classifier(features), collect_aux_losses(self))

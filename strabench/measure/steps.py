"""The step a latency measurement times: one inference forward, or one full training step.

Its own module so that ``latency`` (which times it) and ``runtimes`` (which builds it for each
runtime) both import it from below, not from each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["make_step", "timed_step_loss"]


def timed_step_loss(output: Any, labels: "torch.Tensor") -> "torch.Tensor":
    """The loss of the timed train step: cross-entropy plus every auxiliary loss, unweighted (the
    cost of a step does not depend on the weights; the real objective is ``strabench.train.losses``).

    A model from elsewhere returns a plain tensor: (B, K) is taken as logits (the labels are 0);
    any other shape is reduced by its mean, a loss that only gives backward something to run.
    """
    import torch
    import torch.nn.functional as F

    def full(t: "torch.Tensor") -> "torch.Tensor":  # autocast's bf16/fp16 up to fp32; fp64 stays
        return t.to(torch.promote_types(t.dtype, torch.float32))

    if isinstance(output, torch.Tensor):
        if output.dim() == 2:
            return F.cross_entropy(full(output), labels.clamp(max=output.shape[1] - 1))
        return full(output).mean()
    loss = F.cross_entropy(full(output.logits), labels)
    for value in output.aux_losses.values():
        loss = loss + full(value)
    return loss


def make_step(
    model: "nn.Module",
    inputs: "torch.Tensor",
    labels: "torch.Tensor | None" = None,
    *,
    mode: str,
    amp: str = "none",
    optimizer: "torch.optim.Optimizer | None" = None,
    record: dict | None = None,
) -> Callable[[], None]:
    """The function ``Timer`` calls: one inference forward, or one full training step.

    ``model`` must already be in the right mode (eval for infer, train for train). Train mode
    needs ``labels`` and ``optimizer``; fp16 scales the loss with a GradScaler. ``record`` (if
    given) receives ``aux_losses``: the names of the auxiliary losses the step added.
    """
    import torch

    device = inputs.device.type
    from strabench.amp import amp_dtype, autocast_factory

    autocast = autocast_factory(device, amp_dtype(amp, device))
    if mode == "infer":

        def infer_step() -> None:
            with torch.inference_mode(), autocast():
                model(inputs)

        return infer_step
    if labels is None or optimizer is None:
        raise ValueError("train mode needs labels and an optimizer")
    scaler = torch.amp.GradScaler(device) if amp == "fp16" else None

    def train_step() -> None:
        with autocast():
            output = model(inputs)
            loss = timed_step_loss(output, labels)
        if record is not None:
            record["aux_losses"] = sorted(getattr(output, "aux_losses", None) or {})
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step

"""What a forward pass needs in memory, known before any memory is taken.

A size that passes a model's divisor check can still be far beyond the machine
(``flops --input 99984x99984`` asked for ~120 GB for the input alone, and the OOM killer
answers with a kill, not an error). The model is run on the meta device (shapes only, no
data), so the estimate costs milliseconds whatever the size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strabench.errors import ShapeError, clip

if TYPE_CHECKING:
    from torch import nn


def activation_bytes(model: "nn.Module", shape: tuple[int, ...]) -> tuple[int, int]:
    """(input bytes, largest output of any module) of one float32 forward pass for ``shape``.

    ``model`` lives on the meta device (built under ``torch.device("meta")``), so nothing is
    allocated. A model that cannot take ``shape`` raises here as it would for real
    (``ShapeError``, or torch's RuntimeError for mismatched sizes); an op without a meta kernel
    raises NotImplementedError, which callers treat as "unknown".
    """
    import torch

    was_training = model.training
    model.eval()
    largest = 0

    def hook(_module: "nn.Module", _inputs: tuple, output: object) -> None:
        nonlocal largest
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                largest = max(largest, tensor.numel() * tensor.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        example = torch.empty(shape, device="meta")
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return example.numel() * example.element_size(), largest


def check_fits_in_memory(model: "nn.Module", shape: tuple[int, ...], *, what: str) -> None:
    """Refuse (``ShapeError``) a forward pass whose memory floor exceeds the memory available now.

    The floor is the input plus twice the largest module output (a layer holds its input and its
    output at once; under ``no_grad`` the rest is freed): a lower bound of the real peak, so a
    refusal is certain to be right and an accepted size may still be tight. Available memory is
    ``psutil.virtual_memory().available``. A model whose layers do not fit together at this
    shape (torch's RuntimeError on the meta device) is a ``ShapeError`` too.
    """
    import psutil

    try:
        inputs, largest = activation_bytes(model, shape)
    except NotImplementedError:  # an op without a meta kernel: cannot estimate, let it run
        return
    except RuntimeError as exc:  # a layer's shapes do not line up (e.g. a residual add)
        raise ShapeError(f"{what}: the model cannot take input {tuple(shape)} ({clip(str(exc), 200)})") from None
    floor = inputs + 2 * largest
    available = psutil.virtual_memory().available
    if floor > available:
        raise ShapeError(
            f"{what}: input {tuple(shape)} needs at least {floor / 2**30:.1f} GiB for one forward pass, "
            f"this machine has {available / 2**30:.1f} GiB available"
        )

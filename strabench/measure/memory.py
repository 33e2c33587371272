"""What a forward pass needs in memory, known before any memory is taken.

A size that passes a model's divisor check can still be far beyond the machine
(``flops --input 99984x99984`` asked for ~120 GB for the input alone, and the OOM killer
answers with a kill, not an error). The model is run on the meta device (shapes only, no
data), so the estimate costs the same whatever the size: a tenth of a second for a ResNet-50
(torch's meta kernels of batch norm are Python). A plan checks each variant and every run
checks its model again, so the result is kept for the process, keyed by what decides it (see
``_fingerprint``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from strabench.errors import ShapeError, clip

if TYPE_CHECKING:
    from torch import nn


_MEASURED: "OrderedDict[tuple[Any, ...], tuple[int, int]]" = OrderedDict()  # (fingerprint, shape) -> result
_MEASURED_MAX = 256
_MODULE_INTERNALS: frozenset[str] | None = None


def activation_bytes(model: "nn.Module", shape: tuple[int, ...]) -> tuple[int, int]:
    """(input bytes, largest output of any module) of one float32 forward pass for ``shape``.

    ``model`` lives on the meta device (built under ``torch.device("meta")``), so nothing is
    allocated. A model that cannot take ``shape`` raises here as it would for real
    (``ShapeError``, or torch's RuntimeError for mismatched sizes); an op without a meta kernel
    raises NotImplementedError, which callers treat as "unknown". A result is remembered for
    the process: a model with the same fingerprint (``_fingerprint``) and shape is not run
    again. Failures are not remembered.
    """
    key = _fingerprint(model)
    if key is not None:
        key = (key, tuple(shape))
        if key in _MEASURED:
            _MEASURED.move_to_end(key)
            return _MEASURED[key]
    result = _measure(model, shape)
    if key is not None:
        _MEASURED[key] = result
        if len(_MEASURED) > _MEASURED_MAX:
            _MEASURED.popitem(last=False)
    return result


def _fingerprint(model: "nn.Module") -> tuple[Any, ...] | None:
    """What decides a forward pass's shapes: every module's class (the object, not its name), its
    own attributes (``repr``) and its parameters' and buffers' shapes and dtypes, in order.

    None (never remembered) when a forward hook could change an output, or an attribute has no
    usable ``repr``. An attribute whose ``repr`` names its address only makes two builds differ.
    """
    import torch
    from torch.nn.modules import module as module_state

    global _MODULE_INTERNALS
    if _MODULE_INTERNALS is None:
        _MODULE_INTERNALS = frozenset(vars(torch.nn.Module()))
    if any((module_state._global_forward_hooks, module_state._global_forward_pre_hooks,
            module_state._global_forward_hooks_always_called)):
        return None
    parts: list[Any] = []
    try:
        for name, module in model.named_modules():
            if module._forward_hooks or module._forward_pre_hooks:
                return None
            own = tuple(sorted((k, repr(v)) for k, v in vars(module).items() if k not in _MODULE_INTERNALS))
            tensors = tuple(
                (k, None if t is None else (tuple(t.shape), str(t.dtype), str(t.device)))
                for k, t in (*module._parameters.items(), *module._buffers.items())
            )
            parts.append((name, type(module), module.training, own, tensors))
    except Exception:  # a repr that fails: measure without the memo
        return None
    return tuple(parts)


def _measure(model: "nn.Module", shape: tuple[int, ...]) -> tuple[int, int]:
    """``activation_bytes`` without the memo."""
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

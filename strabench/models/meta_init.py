"""Models built on the meta device (shapes only) skip their initialisers' random and fill ops.

strabench builds a model on the meta device to check it before any run: that its overrides are
taken, that an input size fits, how much memory a batch needs. A meta tensor has a shape and a
dtype but no values, yet torch still runs every initialiser on it (``normal_``, ``uniform_``,
``zero_``, ``fill_``), each through a Python reference implementation: about two thirds of
building a ResNet-50 on the meta device. Inside ``skipping_meta_init()`` those ops return their
meta tensor untouched. They change no shape and no dtype, so the model is the same one; an op
whose arguments torch would refuse (a negative std, an empty range, a fill value that is not a
scalar) still runs, and still fails as it would.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch.overrides import TorchFunctionMode


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _normal_ok(args: tuple, kwargs: dict) -> bool:
    mean, std = _arg(args, kwargs, 0, "mean", 0.0), _arg(args, kwargs, 1, "std", 1.0)
    return _number(mean) and _number(std) and std >= 0


def _uniform_ok(args: tuple, kwargs: dict) -> bool:
    low, high = _arg(args, kwargs, 0, "from", 0.0), _arg(args, kwargs, 1, "to", 1.0)
    return _number(low) and _number(high) and low <= high


def _fill_ok(args: tuple, kwargs: dict) -> bool:
    return _number(_arg(args, kwargs, 0, "value", None))


def _no_args(args: tuple, kwargs: dict) -> bool:
    return not args and not kwargs


# in-place initialiser ops -> whether torch takes their arguments (those after the tensor)
_SKIPPED = {
    torch.Tensor.normal_: _normal_ok,
    torch.Tensor.uniform_: _uniform_ok,
    torch.Tensor.fill_: _fill_ok,
    torch.Tensor.zero_: _no_args,
    torch.Tensor.erfinv_: _no_args,
}


class _SkipInitOnMeta(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        check = _SKIPPED.get(func)
        if check is not None and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            if check(args[1:], {k: v for k, v in kwargs.items() if k != "generator"}):
                return args[0]
        return func(*args, **kwargs)


def skipping_meta_init() -> contextlib.AbstractContextManager[Any]:
    """Inside a ``torch.device("meta")`` block: skip the initialisers' value ops (see the module
    doc); anywhere else: nothing."""
    return _SkipInitOnMeta() if torch.get_default_device().type == "meta" else contextlib.nullcontext()

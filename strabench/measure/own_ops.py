"""Which torch functions each module's *own* forward calls (its children's calls excluded).

The counters cost modules (ptflops, paper) through hooks; arithmetic written directly in a
``forward`` (an attention matmul, a gate multiply) has no hook. To say so instead of dropping
it, one forward runs under a ``TorchFunctionMode`` that records every torch function and
``Tensor`` method called, attributed to the innermost module running. A module that only calls
its children and moves data (a ResNet, a BasicBlock, a Sequential) records no arithmetic, so it
is never reported; one that runs a matmul itself is.

Op names are normalised: ``Tensor.__iadd__``, ``Tensor.add_`` and ``torch.add`` are all ``add``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

#: Multiply-accumulate ops: matrix products and attention. The paper convention (conv and
#: linear layers only) skips them when a module other than Conv2d / Linear runs them.
MULTIPLY_ADD_OPS = frozenset({
    "linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "matmul", "mm", "bmm", "addmm", "addbmm", "baddbmm", "einsum", "tensordot",
    "scaled_dot_product_attention", "multi_head_attention_forward", "inner", "outer", "dot", "mv",
    "chain_matmul", "multi_dot", "apply",  # ``apply``: a custom autograd Function (e.g. a fused product)
})

#: Ops that do no arithmetic a MAC counter costs: data movement, shape queries, creation,
#: comparisons and selections (fvcore treats relu/max/clamp as free too), and ``add``, the
#: residual add that ptflops never counts for stock torchvision blocks (its documented
#: convention). Anything else run by a module's own forward is arithmetic.
FREE_OPS = frozenset({
    # shapes, views, copies, indexing
    "size", "dim", "numel", "shape", "dtype", "device", "is_contiguous", "assert", "is_nested", "is_tensor", "view", "view_as", "reshape",
    "reshape_as", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "squeeze",
    "unsqueeze", "expand", "expand_as", "repeat", "repeat_interleave", "cat", "concat", "concatenate",
    "stack", "split", "chunk", "unbind", "narrow", "select", "getitem", "setitem", "index_select",
    "gather", "roll", "flip", "pad", "unfold", "movedim", "moveaxis", "swapaxes", "clone", "detach",
    "to", "type", "float", "half", "bfloat16", "double", "long", "int", "bool", "new_zeros",
    "new_ones", "new_full", "new_empty", "zeros_like", "ones_like", "empty_like", "full_like",
    "zeros", "ones", "arange", "full", "empty", "tensor", "meshgrid", "masked_fill", "fill", "zero",
    "copy", "requires_grad", "get", "len", "iter", "format", "repr", "hash", "bool_", "item",
    "tolist", "data_ptr", "stride", "storage_offset", "is_floating_point", "element_size",
    "channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "tile", "as_strided", "window_partition",
    # comparisons and selections
    "relu", "relu6", "hardtanh", "clamp", "clamp_min", "clamp_max", "clip", "max", "min", "maximum",
    "minimum", "amax", "amin", "argmax", "argmin", "eq", "ne", "lt", "le", "gt", "ge", "where",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "dropout", "dropout1d",
    "dropout2d", "dropout3d", "drop_path", "topk", "sort", "argsort", "any", "all", "isfinite",
    "isnan", "logical_and", "logical_or", "logical_not", "and", "or", "invert", "bitwise_not",
    # the residual add (see above)
    "add",
})

_DUNDER = {"radd": "add", "iadd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul",
           "itruediv": "div", "truediv": "div", "rtruediv": "div", "rmatmul": "matmul", "imatmul": "matmul",
           "floordiv": "div", "rfloordiv": "div", "ipow": "pow", "rpow": "pow", "neg": "neg"}


def op_name(func: Callable) -> str:
    """``torch.Tensor.__iadd__`` -> ``add``; ``torch.nn.functional.conv2d`` -> ``conv2d``."""
    name = resolve_name(func) or getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    parts = [p for p in name.split(".") if p not in ("__get__", "__set__")]
    last = parts[-1] if parts else name
    bare = last.strip("_")
    if last.startswith("__") and last.endswith("__"):
        return _DUNDER.get(bare, bare)
    return bare


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[str], ops: dict[str, Counter[str]]) -> None:
        super().__init__()
        self.stack, self.ops = stack, ops

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if self.stack:
            self.ops.setdefault(self.stack[-1], Counter())[op_name(func)] += 1
        return func(*args, **(kwargs or {}))


def own_ops(model: nn.Module, example: Tensor) -> dict[str, Counter[str]]:
    """``{module name: Counter(op name -> calls)}`` for one forward of ``example`` (hooks removed after)."""
    stack: list[str] = []
    ops: dict[str, Counter[str]] = {}
    handles = []

    def enter(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple) -> None:
            stack.append(name)

        return hook

    def leave(_module: nn.Module, _inputs: tuple, _output: Any) -> None:  # must return None
        stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), _Recorder(stack, ops):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return ops


def arithmetic(ops: Counter[str]) -> list[str]:
    """The ops of ``ops`` that are arithmetic (not in ``FREE_OPS``), sorted."""
    return sorted(op for op in ops if op not in FREE_OPS)


def display_name(name: str, module: nn.Module) -> str:
    """``layer4.0.conv2 (StRA)``; the model itself is ``(model) ResNet``."""
    return f"{name or '(model)'} ({type(module).__name__})"

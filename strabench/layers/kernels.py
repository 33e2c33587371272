"""Which implementation strabench's blocks run, chosen explicitly, and a record of what ran.

Every block runs one implementation whatever observes it (hooks, the profiler, counters, traces);
what changes it is the input (device, dtype, layout: as for any torch op) and these explicit steps:

- ``use_kernels(model, "fused")`` (how blocks are built): StRA's layers run the ``strabench::``
  operators where their C kernels take the input, SASA runs ``scaled_dot_product_attention``;
  ``use_kernels(model, "stock")``: every block in plain torch ops (modules, einsum, softmax), the
  design comparison (``strabench bench --kernels stock``).
- ``fuse_for_inference(model)`` (like timm's ``reparameterize_model``): each LocalAttention and
  ModeAttention of an eval-mode model becomes one ``strabench::*_infer`` call per block, on its
  running BN statistics. A fused block cannot train or record gradients; ``use_kernels(model,
  "fused")`` undoes it. ``strabench bench --mode infer`` and ``strabench export`` call it.
- ``implementations(model, example)`` runs one forward and names, per block class, the
  operators it ran: what a latency row reports.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from strabench.errors import ConfigError
from strabench.layers.eca import ECA
from strabench.layers.local_attention import LocalAttention
from strabench.layers.mode_attention import ModeAttention
from strabench.layers.non_local import NonLocal
from strabench.layers.pointwise import GroupedPointwiseConv
from strabench.layers.sasa import SASA
from strabench.layers.se import SqueezeExcite
from strabench.layers.stra import SpatialThenMode, StRA

__all__ = ["BLOCK_CLASSES", "KERNELS", "fuse_for_inference", "fused_for_inference", "implementations", "refuse_fused", "switchable", "use_kernels"]

#: ``use_kernels`` choices (``--kernels`` of ``strabench bench``).
KERNELS = ("fused", "stock")
_SWITCHED = (GroupedPointwiseConv, LocalAttention, ModeAttention, SASA)
_FUSIBLE = (LocalAttention, ModeAttention)
#: The blocks ``implementations`` reports (the outermost one of each nest: StRA, not its parts).
BLOCK_CLASSES = (StRA, SpatialThenMode, LocalAttention, ModeAttention, SASA, NonLocal, SqueezeExcite, ECA)


def use_kernels(model: nn.Module, kernels: str) -> nn.Module:
    """Set every strabench block of ``model`` to ``kernels`` ("fused" or "stock"), in place; returns it."""
    if kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    for module in model.modules():
        if isinstance(module, _SWITCHED):
            module.kernels = kernels
    return model


def switchable(model: nn.Module) -> bool:
    """Whether ``use_kernels`` changes anything in ``model`` (it has blocks with StRA's kernels)."""
    return any(isinstance(m, _SWITCHED) for m in model.modules())


def fuse_for_inference(model: nn.Module) -> list[str]:
    """Make each LocalAttention / ModeAttention of the eval-mode ``model`` one inference call (in place);
    the names of the blocks fused. Blocks set to "stock", and blocks whose layers the kernels do not
    implement (another activation, a BN without running statistics ...), are left as they are."""
    if model.training:
        raise ConfigError("fuse_for_inference needs a model in eval mode (model.eval()): it fuses the BNs' running "
                          "statistics")
    fused = []
    for name, module in model.named_modules():
        if isinstance(module, _FUSIBLE) and module.kernels == "fused" and module.fusible():
            module.kernels = "inference"
            fused.append(name)
    return fused


def fused_for_inference(model: nn.Module) -> list[str]:
    """The blocks of ``model`` that ``fuse_for_inference`` fused (and have not been unfused)."""
    return [name for name, m in model.named_modules() if getattr(m, "kernels", None) == "inference"]


def refuse_fused(model: nn.Module, action: str) -> None:
    """Refuse, in one line, to ``action`` (e.g. "count the MACs of") a model with blocks fused for
    inference: they run their layers as one operator, which no module hook sees."""
    fused = fused_for_inference(model)
    if fused:
        raise ConfigError(f"cannot {action} blocks fused for inference ({fused[0] or type(model).__name__}, ...): "
                          "use the model as built, before fuse_for_inference (use_kernels(model, 'fused') undoes it)")


class _OpRecorder(TorchDispatchMode):
    def __init__(self, stack: list[str], seen: dict[str, Counter]) -> None:
        super().__init__()
        self.stack, self.seen = stack, seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.stack:
            self.seen.setdefault(self.stack[-1], Counter())[func.overloadpacket._qualified_op_name] += 1
        return func(*args, **(kwargs or {}))


#: the operators that name an implementation in a latency row (anything else is "torch ops")
_NAMED = {"strabench::": "{op}", "aten::_scaled_dot_product": "SDPA", "aten::scaled_dot_product": "SDPA"}


def _describe(ops: Counter) -> str:
    names = []
    for op in sorted(ops):
        for prefix, label in _NAMED.items():
            if op.startswith(prefix):
                text = label.format(op=op.split("::")[1] if prefix == "strabench::" else op)
                if text not in names:
                    names.append(text)
    return " + ".join(names) if names else "torch ops"


def implementations(model: nn.Module, example: Tensor) -> dict[str, str]:
    """{block class: what it ran} for one forward of ``example`` (no gradient): for each outermost
    strabench block (StRA, LocalAttention, SASA, ...), the ``strabench::`` operators its forward
    dispatched and whether it used ``scaled_dot_product_attention``, else "torch ops". Blocks of one
    class that ran differently are listed as such."""
    stack: list[str] = []
    seen: dict[str, Counter] = {}
    handles = []
    names: dict[str, str] = {}
    inside = set()
    for name, module in model.named_modules():
        if isinstance(module, BLOCK_CLASSES) and not any(p == "" or name.startswith(p + ".") for p in inside):
            inside.add(name)
            names[name] = type(module).__name__

            def enter(_m: nn.Module, _inputs: Any, _name: str = name) -> None:
                stack.append(_name)

            def leave(_m: nn.Module, _inputs: Any, _output: Any) -> None:
                stack.pop()

            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.no_grad(), _OpRecorder(stack, seen):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    by_class: dict[str, list[str]] = {}
    for name, cls in names.items():
        text = _describe(seen.get(name, Counter()))
        if text not in by_class.setdefault(cls, []):
            by_class[cls].append(text)
    return {cls: " | ".join(texts) for cls, texts in sorted(by_class.items())}

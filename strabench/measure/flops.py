"""Multiply-accumulates (MACs) under named conventions.

"FLOPs" in papers usually means multiply-adds, but counters disagree on what they count, so
every number strabench prints names its convention:

- ``paper``: the StRA paper's counter: multiply-adds of Conv2d and Linear layers only, bias
  included (one add per output element), one image, the training-only classifier left out.
  Attention arithmetic (softmax, matmuls, the local weighting) is *by definition* not in it.
- ``fvcore``: fvcore's ``FlopCountAnalysis`` (one fused multiply-add = one flop; counts conv,
  matmul, einsum, BN, pooling ...), extended with handles for every op our blocks emit.
- ``ptflops``: ptflops' pytorch backend (module hooks; its functional patching is off), plus hooks
  that cost our blocks' own arithmetic (see ``strabench.measure.counters``).

``uncounted`` lists what a counter saw but did not count; it is never dropped silently: fvcore's
ops without a handle, ptflops' module classes that do arithmetic of their own without a hook,
and the modules that do multiply-adds outside the paper's conv and linear layers.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from strabench.layers.kernels import refuse_fused
from strabench.measure.mac_count import MacCount  # noqa: F401 - part of this module's API
from strabench.measure.own_ops import own_ops

CONVENTIONS = ("paper", "fvcore", "ptflops")


def training_classifier(model: nn.Module) -> nn.Module | None:
    """The training-only classifier of a strabench model (``TaskModel.classifier``), else None.

    Only strabench's task models have one: a torchvision or timm model's ``classifier`` is part
    of the network, so it is counted like any other layer.
    """
    from strabench.models.base import TaskModel

    return model.classifier if isinstance(model, TaskModel) else None


def _classifier_modules(model: nn.Module) -> set[int]:
    classifier = training_classifier(model)
    return {id(m) for m in classifier.modules()} if classifier is not None else set()


def _conv_linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
    else:  # nn.Linear
        per_output = module.in_features
    bias = 1 if module.bias is not None else 0
    return output.numel() * (per_output + bias)


def count_macs_paper(model: nn.Module, example: torch.Tensor) -> MacCount:
    """The paper's convention, counted with forward hooks on Conv2d and Linear for ``example``.

    ``example`` is one image batch of size 1; the training-only classifier is skipped.
    ``uncounted``: see ``paper_uncounted``.
    """
    refuse_fused(model, "count the MACs of")
    skip = _classifier_modules(model)
    by_module: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            by_module[name] = by_module.get(name, 0) + _conv_linear_macs(module, output)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and id(module) not in skip:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        calls = own_ops(model, example)  # the one forward, with the hooks above in place
    finally:
        for handle in handles:
            handle.remove()
    return MacCount("paper", sum(by_module.values()), by_module, paper_uncounted(model, calls, skip))


def paper_uncounted(model: nn.Module, calls: dict, skip: set[int]) -> list[str]:
    """Modules whose own forward does multiply-adds the paper convention does not count.

    The convention counts Conv2d and Linear layers only; a module that runs a matrix product or
    attention itself (``nn.MultiheadAttention``'s input projection and attention, Swin's window
    attention, a Conv1d, StRA's local weighting) is listed by name, with its class. Elementwise
    ops, normalisation and pooling are outside the convention by definition and never listed;
    nor is a module that only calls its children.
    """
    from strabench.counting import declared_counting
    from strabench.measure.own_ops import MULTIPLY_ADD_OPS, display_name

    listed = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) or id(module) in skip:
            continue
        declared = declared_counting(type(module))
        ran = calls.get(name, {})
        if (declared is not None and declared.multiply_adds) or any(op in MULTIPLY_ADD_OPS for op in ran):
            listed.append(display_name(name, module))
    return listed


def count_macs(model: nn.Module, input_shape: tuple[int, int, int], convention: str = "paper") -> MacCount:
    """MACs of ``model`` (in eval mode) for one image of ``input_shape`` = (C, H, W)."""
    from strabench.errors import ConfigError

    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown MAC convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape)
    check = getattr(model, "check_input", None)
    if check is not None:
        check(tuple(example.shape))
    try:
        if convention == "paper":
            return count_macs_paper(model, example)
        from strabench.measure import counters

        return counters.COUNTERS[convention](model, example)
    finally:
        model.train(was_training)

"""What the inference operators read from a block, and the checks around them (``fuse_for_inference``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["check_inference", "conv_tensors", "eval_norm", "norm_tensors", "plain_pointwise"]


def plain_pointwise(conv: nn.Module, groups: int) -> bool:
    return (
        isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
        and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == groups
        and conv.padding_mode == "zeros"
    )


def eval_norm(bn: nn.Module) -> bool:
    """A BatchNorm2d that normalises with its running statistics (what the inference kernels apply)."""
    return (
        type(bn) is nn.BatchNorm2d and not bn.training and bn.track_running_stats
        and bn.running_mean is not None and bn.running_var is not None
    )


# The inference calls read submodules, parameters and buffers from the modules' own dicts:
# ``nn.Module.__getattr__`` costs about a microsecond each, and a batch-1 call is a few tens of
# microseconds of kernel.


def conv_tensors(conv: nn.Module) -> tuple[Tensor, Tensor | None]:
    return conv._parameters["weight"], conv._parameters.get("bias")


def norm_tensors(bn: nn.Module) -> tuple:
    buffers = bn._buffers
    return bn._parameters.get("weight"), bn._parameters.get("bias"), buffers["running_mean"], buffers["running_var"], bn.eps


def check_inference(block: nn.Module, x: Tensor) -> None:
    """A block fused for inference runs its BNs' running statistics and has no backward: refuse
    training mode and a call that would record gradients, in one line."""
    if block.training or (torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for p in block.parameters()))):
        raise RuntimeError(
            f"{type(block).__name__} was fused for inference (strabench.layers.kernels.fuse_for_inference): it "
            "cannot train or record gradients; run it under torch.no_grad() in eval mode, or call "
            "use_kernels(model, 'fused') first"
        )

"""ModeAttention in inference on the CPU as one kernel call: what eval mode runs under no_grad.

As modules, mode attention is some twenty small ops per call (the mask branch's two grouped 1x1
convs, two BNs and tanh, the softmax over pixels, seven batched matmuls, the gates' BNs and
sigmoids, two addcmuls). At batch 1 on StRA-ResNet-50's layer4 (512 channels, 16 x 8) each op
costs more in dispatch than in arithmetic, and the block took about as long as its local
attention. ``_local_kernel.c``'s ``ma_forward`` does the whole forward in one call: per (image,
mode) the mask branch, the softmax, z and the first gate, then per image the modes' mixing,
then per (image, mode) the second gate and the output (its comment has the equations).

It runs where nothing but speed tells it from the modules: eval mode with every batch norm on
its running statistics, no gradient to record (``torch.no_grad`` / ``inference_mode``, or
nothing requiring one), a contiguous NCHW float32/float64 CPU input, the mask branch built as
``ModeAttention`` builds it, the kernels loaded, and nothing observing the block (hooks,
``torch.jit`` trace, ``torch.compile``, ONNX export, CPU autocast), as for ``_local_fast``.
Training, and everything else, takes the modules. Outputs agree with the modules up to float
rounding (tanh and the sigmoids use the kernel's own exp: a few ulp of 1 in absolute terms).
"""

from __future__ import annotations

from torch import Tensor, nn

from strabench.layers import _local_kernel
from strabench.layers._local_fast import (
    _plain_pointwise, _tree, conv_args, eval_norm, input_fits, norm_args, records_grad, unobserved,
)

__all__ = ["applies", "forward"]


def _parts(block: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """(the mask branch's modules, the four BNs the kernel reads: the branch's two, the first
    gate's, the second gate's, or the first gate's again without interaction)."""
    mods = block._modules
    mask = list(mods["mask"]._modules.values())
    gate1 = mods["gate1_bn"]
    norms = [mask[1], mask[4], gate1, mods["gate2_bn"] if block.interaction else gate1] if len(mask) == 5 else []
    return mask, norms


def applies(block: nn.Module, x: Tensor) -> bool:
    """Whether ``forward(block, x)`` runs ``block`` (a ModeAttention) here (module docstring)."""
    if block.training or not input_fits(x):
        return False
    mask, norms = _parts(block)
    groups = block.groups
    if len(mask) != 5 or type(mask[2]) is not nn.Tanh:
        return False
    if not (_plain_pointwise(mask[0], groups) and _plain_pointwise(mask[3], groups) and mask[3].out_channels == groups):
        return False
    if not all(eval_norm(bn) for bn in norms):
        return False
    return unobserved(_tree(block), x) and not records_grad(block, x) and _local_kernel.available()


def forward(block: nn.Module, x: Tensor) -> Tensor:
    """``block(x)`` for a ModeAttention where ``applies(block, x)``."""
    mask, norms = _parts(block)
    return _local_kernel.mode_attention_forward(
        x, block.groups, conv_args(mask[0]), conv_args(mask[3]), [norm_args(bn) for bn in norms], block.interaction
    )

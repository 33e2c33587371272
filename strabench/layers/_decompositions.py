"""Every ``strabench::`` operator in plain torch ops: what it computes, where its C kernel does not run.

Each function here is the registered decomposition of the operator of the same name in
``strabench.layers.ops``: the operator runs it where its kernel does not apply (another device or
dtype, an input layout the kernel does not take, kernels switched off), ONNX export traces it
(``ops.decomposed()``), and the tests compare the C kernels with it and with float64 loops.
Written from pad / slice / multiply / add / softmax / matmul / conv, with only group and window
sizes read from shapes, so a traced batch stays symbolic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from strabench.layers._local_traceable import traceable_gather_neighbours, traceable_weighted_sum

__all__ = [
    "grouped_pointwise", "local_attention", "local_attention_infer", "local_weighted_sum", "mode_attention_infer",
]

#: A batch norm's tensors in eval mode: (weight or None, bias or None, running mean, running var).
Norm = tuple[Tensor | None, Tensor | None, Tensor, Tensor]


def grouped_pointwise(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """A grouped 1x1 convolution, ``weight`` (out, in / groups, 1, 1)."""
    return F.conv2d(x, weight, bias, groups=groups)


def local_attention(logits: Tensor, value: Tensor, kernel_size: int, mask: bool) -> tuple[Tensor, Tensor]:
    """(out, attention) of LocalAttention from its logit branch's output (paper Eq. 2).

    logits (B, G*(K*K + 1), H, W): per group omega_0..omega_{K*K-1} then nu; value (B, C, H, W).
    attention: (B, G, K*K, H*W), the softmax over the window; an out-of-image neighbour has
    nu = 0 and value 0 (``mask=False``) or is left out of the softmax (``mask=True``).
    """
    kk = kernel_size * kernel_size
    groups = logits.shape[1] // (kk + 1)
    per_group = logits.unflatten(1, (groups, kk + 1))
    fill = float("-inf") if mask else 0.0
    nu = traceable_gather_neighbours(per_group[:, :, kk], kernel_size, 1, fill)  # (B, G, KK, H, W)
    logit = per_group[:, :, :kk] + nu
    if logit.dtype in (torch.float16, torch.bfloat16):
        attn = torch.softmax(logit, dim=2, dtype=torch.float32).to(value.dtype)
    else:
        attn = torch.softmax(logit, dim=2).to(value.dtype)
    return traceable_weighted_sum(attn, value, kernel_size, 1), attn.flatten(3)


def local_weighted_sum(attn: Tensor, value: Tensor, kernel_size: int) -> Tensor:
    """out[b, g*Cg + c, p] = sum_k attn[b, g, k, p] * value[b, g*Cg + c, p + delta_k] (zero outside),
    attn (B, G, K*K, H*W), stride 1."""
    return traceable_weighted_sum(attn.unflatten(3, value.shape[-2:]), value, kernel_size, 1)


def _norm(x: Tensor, norm: Norm, eps: float) -> Tensor:
    weight, bias, mean, var = norm
    return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)


def local_attention_infer(
    x: Tensor, kernel_size: int, mask: bool, groups: int, value: tuple[Tensor, Tensor | None],
    first: tuple[Tensor, Tensor | None], second: tuple[Tensor, Tensor | None], norm1: Norm, eps1: float,
    norm2: Norm, eps2: float,
) -> Tensor:
    """The LocalAttention block in eval mode: value projection, branch conv -> BN -> tanh -> conv -> BN,
    then ``local_attention``. Convs are (weight, bias or None), grouped 1x1."""
    u = F.conv2d(x, value[0], value[1], groups=groups)
    t = torch.tanh(_norm(F.conv2d(x, first[0], first[1], groups=groups), norm1, eps1))
    logits = _norm(F.conv2d(t, second[0], second[1], groups=groups), norm2, eps2)
    return local_attention(logits, u, kernel_size, mask)[0]


def mode_attention_infer(
    x: Tensor, groups: int, first: tuple[Tensor, Tensor | None], second: tuple[Tensor, Tensor | None],
    norms: list[tuple[Norm, float]], interaction: bool,
) -> Tensor:
    """ModeAttention in eval mode (paper Eq. 1 and 3): ``norms`` are the mask branch's two BNs and
    the first gate's, then the second gate's (read only with ``interaction``), each with its eps."""
    b, c, h, w = x.shape
    cg = c // groups
    x = x.contiguous()
    t = torch.tanh(_norm(F.conv2d(x, first[0], first[1], groups=groups), *norms[0]))
    logits = _norm(F.conv2d(t, second[0], second[1], groups=groups), *norms[1])  # (B, G, H, W)
    masks = logits.flatten(2).softmax(dim=-1)  # (B, G, P)
    xg = x.reshape(b, groups, cg, h * w)
    z = torch.matmul(xg, masks.unsqueeze(-1)).squeeze(-1)  # (B, G, Cg)
    r = torch.sigmoid(_norm(torch.matmul(z.unsqueeze(2), xg).reshape(b, groups, h, w), *norms[2]))
    y = xg + r.reshape(b, groups, 1, h * w) * z.unsqueeze(-1)
    if interaction:
        s = torch.matmul(z, z.transpose(1, 2))
        s = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        z2 = torch.matmul((math.sqrt(groups) * s).softmax(dim=-1), z)
        gate = torch.sigmoid(_norm(torch.matmul(z2.unsqueeze(2), y).reshape(b, groups, h, w), *norms[3]))
        y = y + gate.reshape(b, groups, 1, h * w) * z2.unsqueeze(-1)
    return y.reshape(b, c, h, w)

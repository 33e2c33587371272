"""Counting the attention zoo: fvcore op handles and ptflops module hooks the stock counters lack.

``strabench.measure.counters`` plugs these tables into the ``fvcore`` and ``ptflops``
conventions (the ``paper`` convention needs nothing: it counts Conv2d and Linear layers and
lists every other module that multiplies activations in ``uncounted``).

fvcore ops (each costed from the traced shapes; B = the batch dimensions of the output, L
queries, S keys, E the query/key width and Ev the value width per head):

| op | cost |
| --- | --- |
| ``aten::scaled_dot_product_attention`` (PyTorch's fused attention, timm's Attention2d) | B*L*S*(E + Ev) multiply-adds for the two products, + 2 per logit (the scale and the softmax), + 1 per logit for a float ``attn_mask`` (an add; a boolean mask selects, free) |
| ``aten::_native_multi_head_attention`` (``nn.MultiheadAttention``'s inference fast path) | the input projections Lq*E*E + 2*Lk*E*E and the output projection Lq*E*E per batch item (no biases, as fvcore's ``linear``), + the attention as above over all heads |
| ``aten::hardsigmoid``, ``aten::hardswish`` (and in-place forms) | 1 per output element, like sigmoid |

The attention costs are those of the same attention written out (``q @ k * scale``, softmax,
``attn @ v``), so a layer counts the same whether PyTorch fuses it or not (the tests compare).

ptflops hooks, by class (``"module.QualName"``, exact class: a subclass may change forward):
each costs the arithmetic of the class's *own* forward, its child modules keeping their hooks,
with the same per-op costs as fvcore's handles (one per pointwise output element, one per
reduced input element, softmax one per element, exact multiply-adds for products, nearest
upsampling one per output element); the tests check each against fvcore's per-op count of the
same forward. timm's normalisation subclasses (``LayerNorm2d``, ``GroupNorm1``,
``BatchNormAct2d``) get what ptflops gives their torch parents, and the activations ptflops
has no hook for (timm's ``Sigmoid``, ``Hardsigmoid``, ``Hardswish``, ``SiLU``) one per output
element, as ``nn.Sigmoid``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from torch import Tensor, nn

__all__ = ["FVCORE_HANDLES", "PTFLOPS_MACS", "ptflops_macs", "sdpa_macs"]

Handle = Callable[[list, list], int]
OwnMacs = Callable[[Any, Tensor, Tensor], int]

# --------------------------------------------------------------------------------------------
# fvcore: handles on jit values


def _sizes(value: Any) -> list[int] | None:
    kind = value.type()
    if not hasattr(kind, "sizes"):
        return None
    sizes = kind.sizes()
    return list(sizes) if sizes is not None else None


def _is_float_tensor(value: Any) -> bool:
    import torch

    kind = value.type()
    if not isinstance(kind, torch._C.TensorType):
        return False
    dtype = kind.dtype()
    return dtype is not None and dtype.is_floating_point


def sdpa_macs(batch: int, queries: int, keys: int, width: int, value_width: int, *, float_mask: bool = False) -> int:
    """The attention ``softmax(q k^T * scale [+ mask]) v`` for ``batch`` heads: both products, the
    scale and the softmax (one per logit each), a float mask's add."""
    logits = batch * queries * keys
    return logits * (width + value_width) + logits * (2 + int(float_mask))


def _sdpa(inputs: list, outputs: list) -> int:
    query, key, value = (_sizes(v) for v in inputs[:3])
    out = _sizes(outputs[0])
    if not (query and key and value and out):
        raise RuntimeError("scaled_dot_product_attention: a traced tensor has no static shape")
    batch = math.prod(out[:-2])
    return sdpa_macs(batch, query[-2], key[-2], query[-1], value[-1], float_mask=_is_float_tensor(inputs[3]))


def _native_mha(inputs: list, outputs: list) -> int:
    query, key = _sizes(inputs[0]), _sizes(inputs[1])
    if not (query and key):
        raise RuntimeError("_native_multi_head_attention: a traced tensor has no static shape")
    embed, heads = int(inputs[3].toIValue()), int(inputs[4].toIValue())
    batch = math.prod(query[:-2]) if len(query) > 2 else 1
    lq, lk = query[-2], key[-2]
    projections = batch * (lq * embed * embed + 2 * lk * embed * embed + lq * embed * embed)
    float_mask = len(inputs) > 9 and _is_float_tensor(inputs[9])
    return projections + sdpa_macs(batch * heads, lq, lk, embed // heads, embed // heads, float_mask=float_mask)


def _per_output_element(inputs: list, outputs: list) -> int:
    sizes = _sizes(outputs[0])
    return math.prod(sizes) if sizes is not None and _is_float_tensor(outputs[0]) else 0


#: Added to the fvcore convention's handles (see the table in the module docstring).
FVCORE_HANDLES: dict[str, Handle] = {
    "aten::scaled_dot_product_attention": _sdpa,
    "aten::_native_multi_head_attention": _native_mha,
    **{f"aten::{op}{suffix}": _per_output_element for op in ("hardsigmoid", "hardswish") for suffix in ("", "_")},
}

# --------------------------------------------------------------------------------------------
# ptflops: own-forward costs of timm's attention layers (children keep their own hooks)


def _spatial(x: Tensor) -> tuple[int, int, int, int]:
    b, c, h, w = x.shape
    return b, c, h, w


def _gate(m: Any, x: Tensor, out: Tensor) -> int:
    """SE / ESE: mean over H, W (+ 0.5 * mean + 0.5 * max: 3 per channel), x * gate."""
    b, c, _, _ = _spatial(x)
    return 2 * x.numel() + (3 * b * c if getattr(m, "add_maxpool", False) else 0)


def _pool_and_scale(m: Any, x: Tensor, out: Tensor) -> int:
    """ECA / circular ECA: mean over H, W, x * gate (the conv, its padding and the gate are children or free)."""
    return 2 * x.numel()


def _channel_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """CBAM channel gate: mean (max is free), avg + max logits (one per channel), x * gate."""
    b, c, _, _ = _spatial(x)
    return 2 * x.numel() + b * c


def _light_channel_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """Light CBAM channel gate: 0.5 * mean + 0.5 * max (3 per channel), sigmoid (1 per channel), x * gate."""
    b, c, _, _ = _spatial(x)
    return 2 * x.numel() + 4 * b * c


def _spatial_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """CBAM spatial gate: mean over channels (max is free), x * gate."""
    return 2 * x.numel()


def _light_spatial_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """Light CBAM spatial gate: 0.5 * mean + 0.5 * max over channels (3 per position), x * gate."""
    b, _, h, w = _spatial(x)
    return 2 * x.numel() + 3 * b * h * w


def _global_context(m: Any, x: Tensor, out: Tensor) -> int:
    """GC: softmax over positions and the context product (or a mean), x * gate, x + context."""
    b, c, h, w = _spatial(x)
    context = b * h * w + b * c * h * w if m.conv_attn is not None else x.numel()
    return context + (x.numel() if m.mlp_scale is not None else 0) + (x.numel() if m.mlp_add is not None else 0)


def _gather_excite(m: Any, x: Tensor, out: Tensor) -> int:
    """Gather-excite: the parameter-free gather (mean, or an average pool of extent e), the
    optional 0.5 * avg + 0.5 * max, nearest upsampling back (one per output), x * gate."""
    b, c, h, w = _spatial(x)
    macs = x.numel()  # x * gate
    if m.gather is not None:
        gathered = _pooled_size(m.gather, h, w)
    elif m.extent == 0:
        gathered = (1, 1)
        macs += x.numel() + (3 * b * c if m.add_maxpool else 0)
    else:
        k, s = m.gk, m.gs
        gathered = ((h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1)
        pooled = b * c * gathered[0] * gathered[1]
        macs += pooled * k * k + (3 * pooled if m.add_maxpool else 0)
    if gathered != (1, 1):
        macs += x.numel()  # F.interpolate(nearest) back to H x W
    return macs


def _pooled_size(gather: nn.Module, h: int, w: int) -> tuple[int, int]:
    for conv in (mod for mod in gather.modules() if isinstance(mod, nn.Conv2d)):
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return h, w


def _coordinate(m: Any, x: Tensor, out: Tensor) -> int:
    """Coordinate / simple coordinate / efficient local / strip attention: the two directional
    means, two products or sum + product to apply the gates, the optional skip add."""
    return 4 * x.numel() + (x.numel() if getattr(m, "has_skip", False) else 0)


def _non_local(m: Any, x: Tensor, out: Tensor) -> int:
    """Non-local: theta.phi and attn.g products over the HW x HW map, scale and softmax, the residual add."""
    b, c, h, w = _spatial(x)
    n, inner = h * w, m.t.out_channels
    return 2 * b * n * n * inner + 2 * b * n * n + x.numel()


def _selective_kernel(m: Any, x: Tensor, out: Tensor) -> int:
    """SK: the paths weighted by their attention and summed (one each per stacked element)."""
    return 2 * m.num_paths * out.numel()


def _selective_kernel_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """SK attention: sum over the paths, mean over H, W, softmax over the paths."""
    return x.numel() + x.numel() // m.num_paths + out.numel()


def _radix_softmax(m: Any, x: Tensor, out: Tensor) -> int:
    """Split attention's softmax over the radix (a sigmoid for radix 1): one per element."""
    return x.numel()


def _split_attn(m: Any, x: Tensor, out: Tensor) -> int:
    """Split attention: sum over the radix, mean over H, W, the splits weighted and summed."""
    stacked = m.radix * out.numel()
    if m.radix > 1:
        return 3 * stacked + out.numel()
    return 2 * stacked


def _halo(m: Any, x: Tensor, out: Tensor) -> int:
    """Halo: per head and block, block^2 queries against (block + 2 halo)^2 keys: both products,
    the scale, the position logits' add and the softmax."""
    b, _, h, w = _spatial(x)
    blocks = (h // m.block_size) * (w // m.block_size)
    logits = b * m.num_heads * blocks * m.block_size_ds**2 * m.win_size**2
    return logits * (m.dim_head_qk + m.dim_head_v) + 3 * logits


def _halo_pos_embed(m: Any, q: Tensor, out: Tensor) -> int:
    """Relative logits: q against the 2 * window - 1 width and height embeddings, and their sum."""
    return q.numel() * (m.height_rel.shape[0] + m.width_rel.shape[0]) + out.numel()


def _bottleneck(m: Any, x: Tensor, out: Tensor) -> int:
    """BoT: dense HW x HW attention per head: both products, the scale, the position add, the softmax."""
    b, _, h, w = _spatial(x)
    logits = b * m.num_heads * (h * w) ** 2
    return logits * (m.dim_head_qk + m.dim_head_v) + 3 * logits


def _bottleneck_pos_embed(m: Any, q: Tensor, out: Tensor) -> int:
    """Relative logits over the whole map (2W - 1 and 2H - 1 embeddings) and their sum."""
    return q.numel() * (m.height_rel.shape[0] + m.width_rel.shape[0]) + out.numel()


def _lambda(m: Any, x: Tensor, out: Tensor) -> int:
    """Lambda: softmax over the keys, the content lambda k^T v and its application to the
    queries, the position lambdas' application (and, without the lambda conv, their product with
    v), the sum of the two outputs."""
    b, _, h, w = _spatial(x)
    n, k, v, heads = h * w, m.dim_qk, m.dim_v, m.num_heads
    macs = b * k * n + b * k * n * v + 2 * b * heads * n * k * v + b * heads * n * v
    if m.pos_emb is not None:
        macs += b * n * k * n * v
    return macs


def _attention2d(m: Any, x: Tensor, out: Tensor) -> int:
    """Multi-head attention over all positions (fused or written out: the same count)."""
    b, _, h, w = _spatial(x)
    n = h * w
    return sdpa_macs(b * m.num_heads, n, n, m.dim_head, m.dim_head)


def _multi_query(m: Any, x: Tensor, out: Tensor) -> int:
    """Multi-query attention: queries (pooled by query_strides) against one shared key/value head
    (strided by kv_stride); the written-out path scales q, the fused one the logits."""
    b, _, h, w = _spatial(x)
    qh, qw = m.query_strides
    queries = (h // qh) * (w // qw)
    keys = -(-h // m.kv_stride) * -(-w // m.kv_stride)
    heads = b * m.num_heads
    if m.fused_attn or m.einsum:
        return sdpa_macs(heads, queries, keys, m.key_dim, m.value_dim)
    logits = heads * queries * keys
    return logits * (m.key_dim + m.value_dim) + logits + heads * queries * m.key_dim


def _as_ptflops_norm(m: Any, x: Tensor, out: Tensor) -> int:
    """What ptflops gives the torch parent class (its ``bn_flops_counter_hook``): 2 per element if affine, else 1."""
    return x.numel() * (2 if getattr(m, "affine", False) else 1)


def _per_output(m: Any, x: Tensor, out: Tensor) -> int:
    return out.numel()


_TIMM = "timm.layers."
#: ptflops hooks by class (``"module.QualName"``; no import of timm needed to look one up).
PTFLOPS_MACS: dict[str, OwnMacs] = {
    _TIMM + "squeeze_excite.SEModule": _gate,
    _TIMM + "squeeze_excite.EffectiveSEModule": _gate,
    _TIMM + "eca.EcaModule": _pool_and_scale,
    _TIMM + "eca.CecaModule": _pool_and_scale,
    _TIMM + "cbam.ChannelAttn": _channel_attn,
    _TIMM + "cbam.LightChannelAttn": _light_channel_attn,
    _TIMM + "cbam.SpatialAttn": _spatial_attn,
    _TIMM + "cbam.LightSpatialAttn": _light_spatial_attn,
    _TIMM + "global_context.GlobalContext": _global_context,
    _TIMM + "gather_excite.GatherExcite": _gather_excite,
    _TIMM + "coord_attn.CoordAttn": _coordinate,
    _TIMM + "coord_attn.SimpleCoordAttn": _coordinate,
    _TIMM + "coord_attn.EfficientLocalAttn": _coordinate,
    _TIMM + "coord_attn.StripAttn": _coordinate,
    _TIMM + "non_local_attn.NonLocalAttn": _non_local,
    _TIMM + "selective_kernel.SelectiveKernel": _selective_kernel,
    _TIMM + "selective_kernel.SelectiveKernelAttn": _selective_kernel_attn,
    _TIMM + "split_attn.RadixSoftmax": _radix_softmax,
    _TIMM + "split_attn.SplitAttn": _split_attn,
    _TIMM + "halo_attn.HaloAttn": _halo,
    _TIMM + "halo_attn.PosEmbedRel": _halo_pos_embed,
    _TIMM + "bottleneck_attn.BottleneckAttn": _bottleneck,
    _TIMM + "bottleneck_attn.PosEmbedRel": _bottleneck_pos_embed,
    _TIMM + "lambda_layer.LambdaLayer": _lambda,
    _TIMM + "attention2d.Attention2d": _attention2d,
    _TIMM + "attention2d.MultiQueryAttention2d": _multi_query,
    # timm's normalisation subclasses: as ptflops counts their parents
    _TIMM + "norm.LayerNorm2d": _as_ptflops_norm,
    _TIMM + "norm.GroupNorm1": _as_ptflops_norm,
    _TIMM + "norm_act.BatchNormAct2d": _as_ptflops_norm,
    # activations without a ptflops hook: one per output element, as nn.Sigmoid
    _TIMM + "activations.Sigmoid": _per_output,
    "torch.nn.modules.activation.Hardsigmoid": _per_output,
    "torch.nn.modules.activation.Hardswish": _per_output,
    "torch.nn.modules.activation.SiLU": _per_output,
}


def ptflops_macs(cls: type) -> OwnMacs | None:
    """The ptflops hook of ``cls`` from ``PTFLOPS_MACS`` (exact class), else None."""
    return PTFLOPS_MACS.get(f"{cls.__module__}.{cls.__qualname__}")

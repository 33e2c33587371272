"""Every timm-attn block counted under each convention, checked against counts derived by hand.

The references here are written from the layers' definitions (timm's widths and forward
passes, read as equations) and fvcore's documented per-op costs, with plain arithmetic: no
strabench counting code. One small shape per block: 32 channels on an 8x4 map, batch 1.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from strabench.measure import attention_ops, counters
from strabench.measure.flops import count_macs
from strabench.models.blocks import resolve_block

pytest.importorskip("timm")

C, H, W = 32, 8, 4
N = H * W  # positions
HW = H + W  # the two directional descriptors of coordinate-style gates


def conv(cin: int, cout: int, area: int, positions: int, groups: int = 1) -> int:
    """Multiply-adds of a convolution (no bias): per output, in/groups * kernel area."""
    return positions * cout * (cin // groups) * area


def halo_counts() -> tuple[int, int]:
    heads, d = 8, 4  # timm defaults: 8 heads, query/key width make_divisible(32, 8) // 8
    block, win = 2, 2 + 2 * 1  # block_size 2, halo 1: 4x4 windows
    blocks = (H // block) * (W // block)
    logits = heads * blocks * block**2 * win**2
    queries = heads * blocks * block**2 * d
    products = logits * (d + d)
    relative = 2 * queries * (2 * win - 1) + logits  # q against both relative embeddings, their sum
    return 96 * C * N, 96 * C * N + products + 3 * logits + relative  # q: C -> 32, kv: C -> 64


def bottleneck_counts() -> tuple[int, int]:
    heads, d = 4, 8
    logits = heads * N * N
    relative = heads * N * d * ((2 * W - 1) + (2 * H - 1)) + logits
    return 96 * C * N, 96 * C * N + logits * (d + d) + 3 * logits + relative  # qkv: C -> 2*32 + 32


def lambda_counts() -> tuple[int, int]:
    heads, k, v, r = 4, 16, C // 4, 9  # dim_head 16, values C / heads, local lambda conv radius 9
    qkv = heads * k + k + v
    norms = 2 * heads * k * N + 2 * v * N
    content = k * N + k * N * v + heads * N * k * v  # softmax(k), k^T v, q applied to it
    position = k * N * v * r * r + heads * N * k * v  # Conv3d (1 -> k, r x r x 1), q applied to it
    return qkv * C * N, qkv * C * N + norms + content + position + heads * N * v


def sdpa(heads: int, queries: int, keys: int, width: int, value_width: int) -> int:
    """softmax(q k^T * scale) v written out: two products, the scale and the softmax per logit."""
    logits = heads * queries * keys
    return logits * (width + value_width) + 2 * logits


# block text -> (paper MACs, fvcore MACs, what the paper convention lists as outside it)
HAND = {
    # SE: fc 32 -> 8 -> 32 with biases on the pooled vector; mean, sigmoid, x * gate
    "timm-attn:se": (8 * C + 8 + 8 * C + C, 16 * C + C * N + C + C * N, []),
    "timm-attn:ese": (C * C + C, C * C + C * N + C + C * N, []),
    # ECA: k = 3 for 32 channels (Eq. 12), a Conv1d the paper convention does not count
    "timm-attn:eca": (0, 3 * C + C * N + C + C * N, ["conv (Conv1d)"]),
    "timm-attn:ceca": (0, 3 * C + C * N + C + C * N, ["conv (Conv1d)"]),
    # CBAM: channel MLP 32 -> 2 -> 32 on avg and max (no bias); 7x7 conv 2 -> 1 and its BN
    "timm-attn:cbam": (8 * C + conv(2, 1, 49, N),
                       8 * C + C * N + C + C + C * N + C * N + conv(2, 1, 49, N) + 2 * N + N + C * N, []),
    "timm-attn:lcbam": (4 * C + conv(1, 1, 49, N),
                        C * N + 3 * C + 4 * C + C + C * N + C * N + 3 * N + conv(1, 1, 49, N) + 2 * N + N + C * N, []),
    # GC: 1x1 conv C -> 1 (bias), softmax, context product; MLP 32 -> 4 (LayerNorm: 5 per element) -> 32
    "timm-attn:gc": (C * N + N + 4 * C + 4 + 4 * C + C,
                     C * N + N + C * N + 4 * C + 5 * 4 + 4 * C + C + C * N, ["(model) (GlobalContext)"]),
    "timm-attn:gca": (C * N + N + 4 * C + 4 + 4 * C + C,
                      C * N + N + C * N + 4 * C + 5 * 4 + 4 * C + C * N, ["(model) (GlobalContext)"]),
    "timm-attn:ge(use_mlp=False)": (0, C * N + C + C * N, []),
    # coordinate attention: 1x1 convs C -> 8 on H + W descriptors, 8 -> C per direction; BN, hardswish
    "timm-attn:coord": (16 * C * HW, 16 * C * HW + 2 * C * N + 2 * 8 * HW + 8 * HW + C * HW + 2 * C * N, []),
    "timm-attn:scoord": ((8 * C + 8) * HW + (8 * C + C) * HW, 16 * C * HW + 8 * HW + 2 * C * N + 3 * C * N, []),
    # ELA: depthwise 7-tap convs per direction, GroupNorm (5 per element), SiLU, sigmoid
    "timm-attn:ela": (7 * C * HW, 7 * C * HW + 2 * C * N + 5 * C * HW + C * HW + C * HW + 2 * C * N, []),
    "timm-attn:strip": (3 * C * HW, 3 * C * HW + 2 * C * N + 3 * C * N, []),
    # non-local: theta, phi, g: C -> 8 (bias), z: 8 -> C (bias), BN; the two N x N products
    "timm-attn:nl": (3 * (8 * C * N + 8 * N) + 8 * C * N + C * N,
                     32 * C * N + 8 * N * N + 2 * N * N + 8 * N * N + 2 * C * N + C * N, ["(model) (NonLocalAttn)"]),
    # SK: two 3x3 paths on half the input each (BN), attention 32 -> 8 -> 2*32
    "timm-attn:sk": (2 * conv(C // 2, C, 9, N) + 8 * C + 16 * C,
                     2 * conv(C // 2, C, 9, N) + 2 * 2 * C * N + 4 * C * N + 2 * C * N + C * N + 8 * C + 2 * 8 + 16 * C + 2 * C, []),
    # split attention: 3x3 conv C -> 2C in 2 groups; fc 32 -> 32 -> 64 (biases); radix softmax
    "timm-attn:splat": (conv(C, 2 * C, 9, N, groups=2) + 32 * C + 32 + 64 * C + 2 * C,
                        conv(C, 2 * C, 9, N, groups=2) + 2 * C * N + C * N + 32 * C + 64 * C + 2 * C + 4 * C * N, []),
    "timm-attn:halo(block_size=2, halo_size=1)": (*halo_counts(), ["(model) (HaloAttn)", "pos_embed (PosEmbedRel)"]),
    "timm-attn:bottleneck": (*bottleneck_counts(), ["(model) (BottleneckAttn)", "pos_embed (PosEmbedRel)"]),
    "timm-attn:lambda": (*lambda_counts(), ["(model) (LambdaLayer)", "conv_lambda (Conv3d)"]),
    # 2-D attention: qkv 1x1 C -> 3C and proj C -> C with biases, 4 heads of 8, fused attention
    "timm-attn:attn2d(num_heads=4)": ((3 * C * C + 3 * C) * N + (C * C + C) * N, 4 * C * C * N + sdpa(4, N, N, 8, 8),
                                      ["(model) (Attention2d)"]),
    # multi-query: 8 query heads of 4 against one key / value head of 4
    "timm-attn:mqa": (72 * C * N, 72 * C * N + sdpa(8, N, N, 4, 4), ["(model) (MultiQueryAttention2d)"]),
}


def build(text: str, *, size: tuple[int, int] = (H, W), stride: int = 1) -> nn.Module:
    spec = resolve_block(text)
    if spec.kind == "insert":
        return spec.factory(C, size=size).eval()
    return spec.factory(C, C, stride, size=size).eval()


def test_every_wrapped_layer_has_a_hand_count():
    from strabench.models.timm_blocks import TIMM_ATTENTION

    named = {text.split(":")[1].split("(")[0] for text in HAND}
    assert named == set(TIMM_ATTENTION)


@pytest.mark.parametrize("text", list(HAND))
def test_each_convention_matches_the_hand_count(text):
    paper, fvcore, outside = HAND[text]
    block = build(text)
    counts = {conv: count_macs(block, (C, H, W), conv) for conv in ("paper", "fvcore", "ptflops")}
    assert counts["paper"].total == paper
    assert sorted(counts["paper"].uncounted) == sorted(outside)  # products the paper's convention leaves out, named
    assert counts["fvcore"].total == fvcore
    assert counts["fvcore"].uncounted == [] and counts["ptflops"].uncounted == []
    assert counts["ptflops"].total >= paper  # ptflops counts what paper counts (biases too), and more


def _fvcore_by_module(block: nn.Module, x: torch.Tensor) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = (FlopCountAnalysis(block, x).set_op_handle(**counters.FVCORE_HANDLES)
                .unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none"))
    with torch.no_grad():
        return {name: int(v) for name, v in analysis.by_module().items()}


_NORMS_AND_ACTIVATIONS = ("norm.", "norm_act.", "activations.", "torch.nn.")


def _lambda_with_position_embeddings() -> nn.Module:
    from timm.layers.lambda_layer import LambdaLayer

    return LambdaLayer(C, feat_size=(H, W), r=None).eval()  # r=None: no literal setting spells it


@pytest.mark.parametrize("text", [*HAND, "timm-attn:se(add_maxpool=True)", "timm-attn:ge(extent=4, use_mlp=False, add_maxpool=True)",
                                  "timm-attn:gc(use_attn=False)", "timm-attn:strip(has_skip=True)", "timm-attn:splat(radix=1)",
                                  "timm-attn:mqa(kv_stride=2, query_strides=2)", "lambda with position embeddings"])
def test_ptflops_hooks_equal_fvcore_per_module(text):
    """Each attention class's declared own-forward cost equals fvcore's count of that module's own ops."""
    block = build(text) if text.startswith("timm-attn:") else _lambda_with_position_embeddings()
    x = torch.zeros(1, C, H, W)
    fv = _fvcore_by_module(block, x)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen.setdefault(name, (inputs[0], output))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in block.named_modules()]
    with torch.no_grad():
        block(x)
    for h in handles:
        h.remove()
    checked = 0
    for name, module in block.named_modules():
        key = f"{type(module).__module__}.{type(module).__qualname__}"
        formula = attention_ops.PTFLOPS_MACS.get(key)
        if formula is None or any(key.startswith("timm.layers." + p) or key.startswith(p) for p in _NORMS_AND_ACTIVATIONS):
            continue
        children = [f"{name}.{c}" if name else c for c, _ in module.named_children()]
        own = fv.get(name, 0) - sum(fv.get(c, 0) for c in children)
        assert formula(module, *seen[name]) == own, (text, name, key)
        checked += 1
    assert checked >= 1


def test_a_fused_attention_counts_as_the_same_attention_written_out():
    from timm.layers.attention2d import Attention2d, MultiQueryAttention2d

    x = torch.zeros(1, C, H, W)
    for make in (lambda: Attention2d(C, C, num_heads=4), lambda: MultiQueryAttention2d(C, C, num_heads=4)):
        fused, plain = make().eval(), make().eval()
        plain.fused_attn = False
        pair = [{conv: counters.COUNTERS[conv](m, x) for conv in ("fvcore", "ptflops")} for m in (fused, plain)]
        for conv in ("fvcore", "ptflops"):
            assert pair[0][conv].uncounted == pair[1][conv].uncounted == []
        if isinstance(fused, Attention2d):  # the scale multiplies the logits either way; written out, the
            # trace also records the scalar q.size(-1) ** -0.5 as one float op
            assert pair[1]["fvcore"].total - pair[0]["fvcore"].total == 1
            assert pair[0]["ptflops"].total == pair[1]["ptflops"].total
        else:  # written out, multi-query scales q (4 heads x N x 8) instead of the logits (4 heads x N x N)
            for conv in ("fvcore", "ptflops"):  # ptflops' hook follows whichever path runs
                assert pair[0][conv].total - pair[1][conv].total == 4 * N * N - 4 * N * 8


class _Attend(nn.Module):
    def __init__(self, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, q[:, :, :6], q[:, :, :6, :3], attn_mask=self.mask)


@pytest.mark.parametrize("mask,extra", [(None, 0), (torch.zeros(10, 6), 1), (torch.ones(10, 6, dtype=torch.bool), 0)])
def test_scaled_dot_product_attention_is_counted_not_zero(mask, extra, monkeypatch):
    q = torch.zeros(2, 3, 10, 5)  # 2 x 3 heads, 10 queries of width 5 against 6 keys, values of width 3
    logits = 2 * 3 * 10 * 6
    count = counters.count_macs_fvcore(_Attend(mask).eval(), q)
    assert count.total == logits * (5 + 3) + logits * (2 + extra) and count.uncounted == []
    monkeypatch.delitem(counters.FVCORE_HANDLES, "aten::scaled_dot_product_attention")
    assert counters.count_macs_fvcore(_Attend(mask).eval(), q).uncounted == ["aten::scaled_dot_product_attention"]


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def test_torchs_fused_multi_head_attention_is_counted_not_zero(monkeypatch):
    b, length, embed, heads = 2, 10, 32, 4
    x = torch.zeros(b, length, embed)
    projections = b * 4 * length * embed * embed  # q, k, v and output projections (fvcore: no biases)
    expected = projections + sdpa(b * heads, length, length, embed // heads, embed // heads)
    count = counters.count_macs_fvcore(_SelfAttention().eval(), x)
    assert count.total == expected and count.uncounted == []
    monkeypatch.delitem(counters.FVCORE_HANDLES, "aten::_native_multi_head_attention")
    assert counters.count_macs_fvcore(_SelfAttention().eval(), x).uncounted == ["aten::_native_multi_head_attention"]
    # the same layer on its slow path (training mode: projections, then fused attention) counts the same
    assert counters.count_macs_fvcore(_SelfAttention().train(), x).total == expected


@pytest.mark.parametrize("key", ["timm.layers.halo_attn.HaloAttn", "timm.layers.halo_attn.PosEmbedRel", "timm.layers.activations.Sigmoid"])
def test_ptflops_without_a_hook_lists_the_class(key, monkeypatch):
    block = build("timm-attn:halo(block_size=2, halo_size=1)") if "halo" in key else build("timm-attn:se")
    assert count_macs(block, (C, H, W), "ptflops").uncounted == []
    monkeypatch.delitem(attention_ops.PTFLOPS_MACS, key)
    assert count_macs(block, (C, H, W), "ptflops").uncounted == [key]


def test_hard_activations_are_counted_by_fvcore(monkeypatch):
    block = build("timm-attn:ese")  # gate: hard sigmoid
    assert count_macs(block, (C, H, W), "fvcore").uncounted == []
    for op in [k for k in counters.FVCORE_HANDLES if "hardsigmoid" in k]:
        monkeypatch.delitem(counters.FVCORE_HANDLES, op)
    assert count_macs(block, (C, H, W), "fvcore").uncounted == ["aten::hardsigmoid"]


def test_strided_halo_and_bottleneck_count_what_runs():
    """Stride 2: halo strides its queries (block 4 -> 2x2 queries per block), BoT pools after attending."""
    halo = build("timm-attn:halo(block_size=4, halo_size=1)", stride=2)
    heads, d, win = 8, 4, 4 + 2
    logits = heads * (H // 4) * (W // 4) * 2**2 * win**2
    queries = heads * (H // 4) * (W // 4) * 2**2 * d
    q_conv = conv(C, 32, 1, N // 4)  # the query conv is strided
    expected = q_conv + conv(C, 64, 1, N) + logits * (d + d) + 3 * logits + 2 * queries * (2 * win - 1) + logits
    assert count_macs(halo, (C, H, W), "fvcore").total == expected
    bot = build("timm-attn:bottleneck", stride=2)
    assert count_macs(bot, (C, H, W), "fvcore").total == bottleneck_counts()[1] + 4 * C * (N // 4)  # + the 2x2 average pool

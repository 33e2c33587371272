"""Params and paper-convention MACs of every registered model, counted by hand from layer shapes.

The reference of ``test_golden.py``: written from the architectures as the design notes and the
papers describe them (torchvision's bottleneck, the ReID / face / FER heads, MobileNetV2's
table, the blocks' widths), with plain loops over stages and blocks. It builds no module and
calls no strabench code, so it cannot agree with a counter by sharing its mistakes.

Paper convention: multiply-adds of conv and linear layers, a bias adding one per output;
nothing else (BN, pooling, softmax, the attention's weighted sums) is counted. Params: every
parameter except the training-only classifier (BN's weight and bias included, its running
statistics not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass
class Count:
    params: int = 0
    macs: int = 0

    def add(self, other: "Count") -> None:
        self.params += other.params
        self.macs += other.macs


def conv(cin: int, cout: int, k: int, out_hw: tuple[int, int], *, groups: int = 1, bias: bool = False) -> Count:
    per_output = (cin // groups) * k * k + (1 if bias else 0)
    return Count(cout * per_output, out_hw[0] * out_hw[1] * cout * per_output)


def linear(fin: int, fout: int) -> Count:
    return Count(fin * fout + fout, fin * fout + fout)


def bn(channels: int) -> Count:
    return Count(2 * channels, 0)


def down(size: int, stride: int) -> int:
    """A k x k conv with padding k // 2 (or a 1x1 without), stride s: ceil(size / s)."""
    return -(-size // stride)


# --- blocks (their widths as the design notes give them) ---------------------------------------------

Spatial = Callable[[int, int, tuple[int, int], tuple[int, int]], Count]  # (width, stride, in_hw, out_hw)


def conv3x3(width: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int], groups: int = 1) -> Count:
    return conv(width, width, 3, out_hw, groups=groups)


def local_attention(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int], g: int = 8, k: int = 3) -> Count:
    """Value: grouped 1x1 C->C; branch: grouped 1x1 C->C/4 (rounded up to a multiple of G, bias),
    BN, tanh, grouped 1x1 -> G(K^2+1) (bias), BN. All at the input's resolution."""
    hidden = max(g, math.ceil(c / 4 / g) * g)
    total = Count()
    total.add(conv(c, c, 1, in_hw, groups=g))
    total.add(conv(c, hidden, 1, in_hw, groups=g, bias=True))
    total.add(bn(hidden))
    total.add(conv(hidden, g * (k * k + 1), 1, in_hw, groups=g, bias=True))
    total.add(bn(g * (k * k + 1)))
    return total


def mode_attention(c: int, hw: tuple[int, int], g: int = 8, interaction: bool = True) -> Count:
    """Masks: grouped 1x1 C->8G, BN, tanh, grouped 1x1 8G->G, BN (no biases); a BN per gate."""
    total = Count()
    total.add(conv(c, 8 * g, 1, hw, groups=g))
    total.add(bn(8 * g))
    total.add(conv(8 * g, g, 1, hw, groups=g))
    total.add(bn(g))
    total.add(bn(g))
    if interaction:
        total.add(bn(g))
    return total


def stra(g: int = 8, k: int = 3, interaction: bool = True) -> Spatial:
    def count(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Count:
        total = local_attention(c, stride, in_hw, out_hw, g, k)
        total.add(mode_attention(c, out_hw, g, interaction))
        return total

    return count


def local(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Count:
    return local_attention(c, stride, in_hw, out_hw)


def sasa(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int], heads: int = 8, k: int = 7) -> Count:
    """q, k, v: grouped 1x1 C->C (heads groups, no bias); relative row and column embeddings of
    C/heads/2 x K per head (parameters, no MACs: the logits are matmuls)."""
    total = Count()
    for _ in range(3):
        total.add(conv(c, c, 1, in_hw, groups=heads))
    total.params += 2 * heads * (c // heads // 2) * k
    return total


def then_mode(spatial: Spatial, g: int = 8) -> Spatial:
    def count(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Count:
        total = spatial(c, stride, in_hw, out_hw)
        total.add(mode_attention(c, out_hw, g))
        return total

    return count


def gconv(c: int, stride: int, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Count:
    return conv3x3(c, stride, in_hw, out_hw, groups=8)


def se(c: int, hw: tuple[int, int]) -> Count:
    """Pool, 1x1 C->C/16 (bias), ReLU, 1x1 C/16->C (bias), on the 1x1 pooled map."""
    total = conv(c, c // 16, 1, (1, 1), bias=True)
    total.add(conv(c // 16, c, 1, (1, 1), bias=True))
    return total


def eca(c: int, hw: tuple[int, int]) -> Count:
    """One Conv1d of k weights, k from C (ECA-Net Eq. 12); a Conv1d is not a paper-convention layer."""
    t = int(abs((math.log2(c) + 1) / 2))
    return Count(t if t % 2 else t + 1, 0)


def non_local(c: int, hw: tuple[int, int]) -> Count:
    """theta, phi, g: 1x1 C->C/2 (bias; phi and g then 2x2-pooled); W: 1x1 C/2->C (bias); BN."""
    inner = c // 2
    total = Count()
    for _ in range(3):
        total.add(conv(c, inner, 1, hw, bias=True))
    total.add(conv(inner, c, 1, hw, bias=True))
    total.add(bn(c))
    return total


# --- networks --------------------------------------------------------------------------------------


def resnet(
    *,
    size: tuple[int, int] = (256, 128),
    in_chans: int = 3,
    layers: tuple[int, ...] = (3, 4, 6, 3),
    strides: tuple[int, ...] = (1, 2, 2, 1),
    stem: str = "imagenet",
    head: str = "reid",
    layer4: Spatial | None = None,
    addon: Callable[[int, tuple[int, int]], Count] | None = None,
    post: dict[int, tuple[int, ...]] | None = None,
    keep_conv3: bool = True,
) -> Count:
    """torchvision's bottleneck ResNet (stride on the 3x3), our stems and heads."""
    total = Count()
    h, w = size
    if stem == "imagenet":  # 7x7/2 conv, 3x3/2 max-pool
        h, w = down(h, 2), down(w, 2)
        total.add(conv(in_chans, 64, 7, (h, w)))
        h, w = down(h, 2), down(w, 2)
    else:  # 3x3/1 conv, no pool
        total.add(conv(in_chans, 64, 3, (h, w)))
    total.add(bn(64))
    inplanes = 64
    for stage, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), layers, strides)):
        last_stage = stage == 3
        for i in range(blocks):
            s = stride if i == 0 else 1
            out_hw = (down(h, s), down(w, s))
            expanded = planes * 4 if (keep_conv3 or not last_stage) else planes
            total.add(conv(inplanes, planes, 1, (h, w)))
            total.add(bn(planes))
            spatial = layer4 if (last_stage and layer4) else conv3x3
            total.add(spatial(planes, s, (h, w), out_hw))
            total.add(bn(planes))
            if keep_conv3 or not last_stage:
                total.add(conv(planes, expanded, 1, out_hw))
            total.add(bn(expanded))
            if addon:
                total.add(addon(expanded, out_hw))
            if s != 1 or inplanes != expanded:
                total.add(conv(inplanes, expanded, 1, out_hw))
                total.add(bn(expanded))
            if post and i in post.get(stage, ()):
                total.add(non_local(expanded, out_hw))
            inplanes, (h, w) = expanded, out_hw
    if head == "reid":  # pool, 1x1 conv C->512 (no bias), BN
        total.add(conv(inplanes, 512, 1, (1, 1)))
        total.add(bn(512))
    elif head == "face":  # BN, dropout, FC(C*H*W -> 512), BN1d
        total.add(bn(inplanes))
        total.add(linear(inplanes * h * w, 512))
        total.add(bn(512))
    return total  # head "pool": no parameters


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding: to the nearest multiple of 8, never more than 10% down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenetv2(width_mult: float, *, last_spatial: Spatial | None = None, size: tuple[int, int] = (256, 128)) -> Count:
    """MobileNetV2 (t, c, n, s) with the 160-channel stage's stride removed, and the ReID head.
    ``last_spatial`` replaces the last block's depthwise conv and its BN stays after it."""
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 1), (6, 320, 1, 1)]
    total = Count()
    h, w = down(size[0], 2), down(size[1], 2)
    cin = make_divisible(32 * width_mult)
    total.add(conv(3, cin, 3, (h, w)))
    total.add(bn(cin))
    blocks = [(t, make_divisible(c * width_mult), s if i == 0 else 1) for t, c, n, s in table for i in range(n)]
    for index, (t, cout, s) in enumerate(blocks):
        hidden = round(cin * t)
        if t != 1:
            total.add(conv(cin, hidden, 1, (h, w)))
            total.add(bn(hidden))
        out_hw = (down(h, s), down(w, s))
        if last_spatial is not None and index == len(blocks) - 1:
            total.add(last_spatial(hidden, s, (h, w), out_hw))
        else:
            total.add(conv(hidden, hidden, 3, out_hw, groups=hidden))
        total.add(bn(hidden))
        total.add(conv(hidden, cout, 1, out_hw))
        total.add(bn(cout))
        cin, (h, w) = cout, out_hw
    last = make_divisible(1280 * max(1.0, width_mult))
    total.add(conv(cin, last, 1, (h, w)))
    total.add(bn(last))
    total.add(conv(last, 512, 1, (1, 1)))
    total.add(bn(512))
    return total


FACE = {"size": (112, 112), "stem": "small", "strides": (2, 2, 2, 2), "head": "face"}
FER = {"size": (44, 44), "in_chans": 1, "layers": (3, 3, 3, 3), "strides": (1, 2, 2, 2), "stem": "small", "head": "pool"}

#: Every registered model, counted at its default input.
HAND_COUNTS: dict[str, Callable[[], Count]] = {
    "resnet50": lambda: resnet(),
    "resnet50_se": lambda: resnet(addon=se),
    "resnet50_eca": lambda: resnet(addon=eca),
    "resnet50_nl": lambda: resnet(post={1: (1, 3), 2: (1, 3, 5)}),
    "resnet50_sasa": lambda: resnet(layer4=sasa),
    "resnet50_sasa_mode": lambda: resnet(layer4=then_mode(sasa)),
    "resnet50_conv_mode": lambda: resnet(layer4=then_mode(conv3x3)),
    "resnet50_gconv_mode": lambda: resnet(layer4=then_mode(gconv)),
    "resnet50_local": lambda: resnet(layer4=local),
    "resnet50_local_mode": lambda: resnet(layer4=stra(interaction=False)),
    "resnet50_stra": lambda: resnet(layer4=stra()),
    "mobilenetv2_100": lambda: mobilenetv2(1.0),
    "mobilenetv2_140": lambda: mobilenetv2(1.4),
    "mobilenetv2_100_stra": lambda: mobilenetv2(1.0, last_spatial=stra()),
    "mobilenetv2_140_stra": lambda: mobilenetv2(1.4, last_spatial=stra()),
    "face_resnet50": lambda: resnet(**FACE),
    "face_resnet50_stra": lambda: resnet(layer4=stra(), **FACE),
    "fer_resnet": lambda: resnet(**FER),
    "fer_resnet_stra": lambda: resnet(layer4=stra(), keep_conv3=False, **FER),
}

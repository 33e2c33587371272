"""Counting any module: torchvision (and timm, when installed) models under the three conventions.

The paper convention is checked against a conv2d + linear hook count written here; fvcore and
ptflops must agree within 2 % of each other, or one of them must say what it left out.
Small inputs keep this cheap on a 2-core machine.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from strabench.measure.flops import count_macs
from strabench.registry import create_model

TOLERANCE = 0.02  # fvcore vs ptflops: BN, pooling, activations and residual adds are costed differently

TORCHVISION = {
    "torchvision:resnet18": ((3, 64, 64), {}),
    "torchvision:mobilenet_v3_small": ((3, 64, 64), {}),
    "torchvision:swin_t": ((3, 64, 64), {}),
    "torchvision:vit_b_16": ((3, 32, 32), {"image_size": 32}),
}
TIMM = {"timm:resnet18": ((3, 64, 64), {}), "timm:mobilenetv3_small_100": ((3, 64, 64), {}),
        "timm:vit_tiny_patch16_224": ((3, 32, 32), {"img_size": 32})}  # ptflops hooks timm's Attention itself


def conv_linear_macs(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """Independent reference: (in/groups * kh * kw + bias) per Conv2d output, (in + bias) per Linear output."""
    total = 0

    def hook(m: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            per = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            per = m.in_features
        total += out.numel() * (per + (m.bias is not None))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def check(model: nn.Module, shape: tuple[int, int, int]) -> dict:
    counts = {c: count_macs(model, shape, c) for c in ("paper", "fvcore", "ptflops")}
    assert counts["paper"].total == conv_linear_macs(model, shape)
    fv, pt = counts["fvcore"], counts["ptflops"]
    if abs(fv.total - pt.total) > TOLERANCE * pt.total:
        assert fv.uncounted or pt.uncounted, f"fvcore {fv.total} vs ptflops {pt.total} and neither says why"
    assert not any(u.startswith("(model)") for u in counts["paper"].uncounted)
    return counts


@pytest.mark.parametrize("ref", list(TORCHVISION))
def test_torchvision_models_are_counted_honestly(ref):
    shape, kwargs = TORCHVISION[ref]
    counts = check(create_model(ref, **kwargs), shape)
    containers = ("ResNet", "BasicBlock", "Sequential", "SwinTransformer", "VisionTransformer", "Encoder")
    for conv in ("ptflops", "paper"):
        assert not any(u.rsplit(".", 1)[-1] in containers for u in counts[conv].uncounted), counts[conv].uncounted
    if ref == "torchvision:resnet18":
        assert all(c.uncounted == [] for c in counts.values())
    if ref == "torchvision:vit_b_16":  # the input projection and attention of every encoder layer
        assert len(counts["paper"].uncounted) == 12
        assert all("MultiheadAttention" in u for u in counts["paper"].uncounted)
    if ref == "torchvision:swin_t":  # window attention: matmuls and softmax written in its forward
        assert any("ShiftedWindowAttention" in u for u in counts["ptflops"].uncounted)
        assert any("ShiftedWindowAttention" in u for u in counts["paper"].uncounted)


@pytest.mark.parametrize("ref", list(TIMM))
def test_timm_models_are_counted_honestly(ref):
    pytest.importorskip("timm")
    shape, kwargs = TIMM[ref]
    check(create_model(ref, **kwargs), shape)


def test_paper_lists_multihead_attention_and_not_containers():
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU()))
    attn = nn.MultiheadAttention(8, 2, batch_first=True)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.attn = model, attn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.proj(x.flatten(2).transpose(1, 2))
            return self.attn(t, t, t)[0]

    count = count_macs(Net(), (8, 2, 2), "paper")
    assert count.uncounted == ["attn (MultiheadAttention)"]
    # only proj.0 (4 tokens x (8 + bias) x 8): MultiheadAttention runs its projections, out_proj
    # included, through F.multi_head_attention_forward, so no Linear hook inside it ever fires
    assert count.total == 4 * (8 + 1) * 8 and count.by_module == {"proj.0": 288}


def test_ptflops_keeps_the_children_of_a_module_it_hooks(monkeypatch):
    """ptflops hooks some containers (timm's ViT Attention) for their own arithmetic only and then
    stops summing there: the Linear layers inside must still be in the total."""
    from ptflops.pytorch_ops import MODULES_MAPPING

    class Core(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x) * 2

    def core_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        module.__flops__ += output.numel()  # its own "* 2", the Linear has its own hook

    monkeypatch.setitem(MODULES_MAPPING, Core, core_hook)
    model = nn.Sequential(nn.Linear(8, 8), Core())
    count = count_macs(model, (1, 3, 8), "ptflops")
    per_image = 3 * 8 * (8 + 1) + 3 * 4 * (8 + 1) + 3 * 4  # both Linears (bias included) + Core's own
    assert count.total == per_image

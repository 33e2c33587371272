"""The StRA block (local attention -> mode attention) and the "X + Mode" ablation wrapper, against
float64 references written from the paper's equations (tests/layers/paper_reference.py), in
training and eval mode, with strides, odd sizes and both border modes; and the block where it
sits in the ReID ResNet-50 (conv1 -> BN -> ReLU -> StRA -> bn2 -> ReLU -> conv3 -> bn3 -> + identity -> ReLU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paper_reference as ref
from strabench.layers.mode_attention import ModeAttention, diversity_loss
from strabench.layers.stra import SpatialThenMode, StRA

TOL = {"atol": 1e-9, "rtol": 1e-7}


def _block(channels: int, groups: int, seed: int = 0, **kw) -> StRA:
    torch.manual_seed(seed)
    block = StRA(channels, groups=groups, **kw).double()
    ref.set_random_batch_norm(block, seed)
    return block


def reference_stra(block: StRA, x: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    local, _ = ref.local_attention(block.local, x, training=training)
    out, _, diversity = ref.mode_attention(block.mode, local, training=training)
    return out, diversity


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("border", ["zero", "mask"])
@pytest.mark.parametrize("channels, groups, stride, hw, interaction", [
    (16, 4, 1, (5, 3), True),
    (24, 8, 2, (7, 5), True),   # stride 2 on odd sizes
    (12, 3, 1, (4, 6), False),  # "w/o interaction", G = 3
    (16, 2, 2, (6, 4), False),
])
def test_block_matches_the_equations(training, border, channels, groups, stride, hw, interaction) -> None:
    block = _block(channels, groups, stride=stride, border=border, interaction=interaction).train(training)
    x = torch.randn(3, channels, *hw, dtype=torch.float64, requires_grad=True)
    expected, diversity = reference_stra(block, x, training)
    got = block(x)
    torch.testing.assert_close(got, expected, **TOL)
    aux = block.mode.pop_aux_losses()
    if training:
        torch.testing.assert_close(aux["diversity"].double(), diversity, atol=1e-6, rtol=1e-6)
    else:
        assert aux == {}
    weight = torch.randn_like(got)
    params = [p for p in block.parameters()]
    grads = torch.autograd.grad((got * weight).sum(), [x, *params])
    grads_ref = torch.autograd.grad((expected * weight).sum(), [x, *params], allow_unused=True)
    for (name, _), g, g_ref in zip([("x", x), *block.named_parameters()], grads, grads_ref):
        torch.testing.assert_close(g, torch.zeros_like(g) if g_ref is None else g_ref, atol=1e-8, rtol=1e-6, msg=name)


def test_output_shape_follows_the_local_attention_stride() -> None:
    block = StRA(32, groups=8, stride=2).eval()
    assert block(torch.randn(2, 32, 7, 5)).shape == (2, 32, 4, 3)


def _conv3x3_reference(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """out[o](p) = sum_{offsets} sum_c W[o, c, dy, dx] x[c](p*s + delta), zero outside, per group."""
    b, c, h, w = x.shape
    s, groups = conv.stride[0], conv.groups
    ho, wo = ref.out_size(h, 3, s), ref.out_size(w, 3, s)
    co, ci = conv.out_channels // groups, c // groups
    out = x.new_zeros(b, conv.out_channels, ho, wo)
    for i in range(ho):
        for j in range(wo):
            for dy, dx in ref.window(3):
                y, xx = i * s + dy, j * s + dx
                if 0 <= y < h and 0 <= xx < w:
                    for g in range(groups):
                        weight = conv.weight[g * co:(g + 1) * co, :, dy + 1, dx + 1]
                        out[:, g * co:(g + 1) * co, i, j] += x[:, g * ci:(g + 1) * ci, y, xx] @ weight.T
    return out


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("conv_groups, stride", [(1, 1), (4, 2)])
def test_conv_then_mode_matches_the_equations(training: bool, conv_groups: int, stride: int) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(16, 16, 3, stride=stride, padding=1, groups=conv_groups, bias=False)
    block = SpatialThenMode(conv, 16, groups=4).double().train(training)
    ref.set_random_batch_norm(block, 3)
    x = torch.randn(3, 16, 5, 7, dtype=torch.float64)
    expected, _, _ = ref.mode_attention(block.mode, _conv3x3_reference(block.spatial, x), training=training)
    torch.testing.assert_close(block(x), expected, **TOL)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_bottleneck_of_resnet50_stra_matches_the_design(training: bool) -> None:
    """layer4's block: conv1 1x1 -> BN -> ReLU -> StRA -> bn2 -> ReLU -> conv3 1x1 -> bn3 -> + identity -> ReLU."""
    from strabench.registry import create_model

    torch.manual_seed(4)
    model = create_model("resnet50_stra", num_classes=3, zero_init_last=False).double()
    block = model.layer4[1]  # no downsample: identity is the input
    ref.set_random_batch_norm(block, 4)
    block.train(training)
    assert isinstance(block.conv2, StRA) and block.downsample is None
    x = torch.randn(2, 2048, 5, 3, dtype=torch.float64)
    h = torch.relu(ref.batch_norm(ref.conv1x1(x, block.conv1.weight, None, 1), block.bn1, training))
    h, _ = reference_stra(block.conv2, h, training)
    h = torch.relu(ref.batch_norm(h, block.bn2, training))
    h = ref.batch_norm(ref.conv1x1(h, block.conv3.weight, None, 1), block.bn3, training)
    expected = torch.relu(h + x)
    torch.testing.assert_close(block(x), expected, atol=1e-8, rtol=1e-6)


def test_diversity_loss_by_hand() -> None:
    """L_d = G - sum_p max_g M_g(p), worked out on paper for G = 3 modes over 4 positions."""
    masks = torch.tensor([[[0.1, 0.2, 0.3, 0.4],
                           [0.4, 0.3, 0.2, 0.1],
                           [0.25, 0.25, 0.25, 0.25]]])
    # per-position maxima 0.4, 0.3, 0.3, 0.4 -> sum 1.4 -> 3 - 1.4
    torch.testing.assert_close(diversity_loss(masks), torch.tensor([1.6]))


def test_diversity_loss_at_random_masks() -> None:
    generator = torch.Generator().manual_seed(5)
    masks = torch.rand(4, 6, 10, generator=generator).double()
    masks = masks / masks.sum(dim=-1, keepdim=True)
    plain = masks.tolist()
    expected = [6 - sum(max(plain[n][g][p] for g in range(6)) for p in range(10)) for n in range(4)]
    torch.testing.assert_close(diversity_loss(masks), torch.tensor(expected, dtype=torch.float64))


def test_mode_attention_hands_back_the_diversity_of_its_own_masks() -> None:
    torch.manual_seed(6)
    block = ModeAttention(16, groups=4).double().train()
    ref.set_random_batch_norm(block, 6)
    x = torch.randn(3, 16, 5, 3, dtype=torch.float64)
    _, masks, diversity = ref.mode_attention(block, x, training=True)
    block(x)
    torch.testing.assert_close(block.pop_aux_losses()["diversity"].double(), diversity, atol=1e-6, rtol=1e-6)
    assert ((diversity >= 0) & (diversity <= 4 - 1)).all()


class _ActivationCopies(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every aten op that writes a tensor as large as the activation by copying one
    (copy_, clone, contiguous's copies): the layout conversions a profile would show."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.copies = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in ("copy_", "clone", "_to_copy", "contiguous") and isinstance(out, torch.Tensor) and out.numel() >= self.numel:
            self.copies.append(name)
        return out


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_block_never_copies_the_activation(channels_last: bool, training: bool) -> None:
    """Neither layout is converted inside the block, forward or backward: the value, output and
    mode-attention products run in the input's own layout (only G*K*K-per-pixel attention maps,
    smaller than the activation at C > G*K*K, may be re-laid out)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    block = StRA(128, groups=8).train(training).to(memory_format=fmt)
    x = torch.randn(2, 128, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    spy = _ActivationCopies(x.numel())
    with spy:
        out = block(x)
        out.backward(torch.randn_like(out))
    assert out.is_contiguous(memory_format=fmt)
    assert spy.copies == []

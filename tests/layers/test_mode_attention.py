from __future__ import annotations

import math

import pytest
import torch

from strabench.errors import ShapeError
from strabench.layers.mode_attention import ModeAttention, diversity_loss


def reference_mode_attention(block: ModeAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1/3 + appendix A written pixel by pixel and mode by mode (slow, obviously correct)."""
    b, c, h, w = x.shape
    g = block.groups
    cg = c // g
    masks = block.masks(x)  # (B, G, H, W), tested separately below
    out = torch.zeros_like(x)
    for n in range(b):
        z = [sum(masks[n, k, i, j] * x[n, k * cg:(k + 1) * cg, i, j] for i in range(h) for j in range(w)) for k in range(g)]
        inner = torch.stack([torch.stack([torch.stack([z[k] @ x[n, k * cg:(k + 1) * cg, i, j] for j in range(w)]) for i in range(h)]) for k in range(g)])
        out_n = x[n].clone()
        bn_inputs = inner  # (G, H, W); BN is per mode
        r = torch.sigmoid(_bn_eval(block.gate1_bn, bn_inputs))
        for k in range(g):
            out_n[k * cg:(k + 1) * cg] = x[n, k * cg:(k + 1) * cg] + r[k] * z[k][:, None, None]
        if block.interaction:
            zs = torch.stack(z)
            s = zs @ zs.T
            s = s / s.norm(dim=1, keepdim=True)
            p = torch.softmax(math.sqrt(g) * s, dim=1)
            z2 = p @ zs
            inner2 = torch.stack([torch.einsum("c,chw->hw", z2[k], out_n[k * cg:(k + 1) * cg]) for k in range(g)])
            s_gate = torch.sigmoid(_bn_eval(block.gate2_bn, inner2))
            y = out_n.clone()
            for k in range(g):
                y[k * cg:(k + 1) * cg] = out_n[k * cg:(k + 1) * cg] + s_gate[k] * z2[k][:, None, None]
            out_n = y
        out[n] = out_n
    return out


def _bn_eval(bn: torch.nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("interaction", [True, False])
@pytest.mark.parametrize("channels,groups,hw", [(16, 4, (3, 5)), (24, 8, (4, 2)), (32, 8, (1, 1))])
def test_matches_reference_outputs_and_gradients(interaction, channels, groups, hw):
    torch.manual_seed(1)
    block = ModeAttention(channels, groups=groups, interaction=interaction).double().eval()
    _randomise_bn(block)
    x = torch.randn(2, channels, *hw, dtype=torch.float64, requires_grad=True)
    fast = block(x)
    slow = reference_mode_attention(block, x)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    weight = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * weight).sum(), [x, *block.parameters()])
    grads_slow = torch.autograd.grad((slow * weight).sum(), [x, *block.parameters()], allow_unused=True)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, torch.zeros_like(gf) if gs is None else gs, atol=1e-5, rtol=1e-5)


def test_masks_are_spatial_softmaxes():
    block = ModeAttention(32, groups=8)
    masks = block.masks(torch.randn(3, 32, 5, 4))
    assert masks.shape == (3, 8, 5, 4)
    torch.testing.assert_close(masks.sum(dim=(2, 3)), torch.ones(3, 8))


def test_diversity_loss_extremes():
    g, p = 4, 8
    same = torch.full((2, g, p), 1.0 / p)
    assert torch.allclose(diversity_loss(same), torch.full((2,), g - 1.0))
    disjoint = torch.zeros(1, g, p)
    for k in range(g):
        disjoint[0, k, 2 * k] = 1.0
    assert torch.allclose(diversity_loss(disjoint), torch.zeros(1))


def test_aux_loss_only_in_training_and_cleared_on_read():
    block = ModeAttention(16, groups=4)
    block.train()
    block(torch.randn(3, 16, 4, 4))
    aux = block.pop_aux_losses()
    assert set(aux) == {"diversity"} and aux["diversity"].shape == (3,)
    assert block.pop_aux_losses() == {}
    block.eval()
    block(torch.randn(3, 16, 4, 4))
    assert block.pop_aux_losses() == {}


@pytest.mark.parametrize("interaction", [True, False])
def test_gradients_reach_every_parameter(interaction):
    block = ModeAttention(32, groups=8, interaction=interaction).train()
    x = torch.randn(4, 32, 6, 5)
    out = block(x)
    loss = (out * torch.randn_like(out)).sum() + block.pop_aux_losses()["diversity"].sum()
    loss.backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        ModeAttention(30, groups=8)
    with pytest.raises(ShapeError):
        ModeAttention(32, groups=8)(torch.randn(1, 16, 4, 4))

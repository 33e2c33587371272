from __future__ import annotations

import pytest
import torch

import paper_reference
from strabench.errors import ShapeError
from strabench.layers.mode_attention import ModeAttention, diversity_loss


@pytest.mark.parametrize("interaction", [True, False])
@pytest.mark.parametrize("channels,groups,hw", [(16, 4, (3, 5)), (24, 8, (4, 2)), (32, 8, (1, 1)), (24, 3, (5, 1))])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_reference_outputs_and_gradients(interaction, channels, groups, hw, training):
    torch.manual_seed(1)
    block = ModeAttention(channels, groups=groups, interaction=interaction).double().train(training)
    paper_reference.set_random_batch_norm(block, 1)
    x = torch.randn(3, channels, *hw, dtype=torch.float64, requires_grad=True)
    slow, masks, _ = paper_reference.mode_attention(block, x, training=training)
    torch.testing.assert_close(block.masks(x), masks, atol=1e-10, rtol=1e-8)
    _assert_matches(block(x), slow, [x, *block.parameters()])


def _assert_matches(fast: torch.Tensor, slow: torch.Tensor, inputs: list) -> None:
    """Outputs, and gradients of a random projection w.r.t. ``inputs`` (a parameter the reference
    leaves unused must get a zero gradient)."""
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-7)
    weight = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * weight).sum(), inputs)
    grads_slow = torch.autograd.grad((slow * weight).sum(), inputs, allow_unused=True)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, torch.zeros_like(gf) if gs is None else gs, atol=1e-8, rtol=1e-6)


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


@pytest.mark.parametrize("interaction", [True, False])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_channels_last_matches_reference_and_keeps_layout(interaction, training):
    """channels_last takes its own product path (no copy of x): same outputs and gradients."""
    torch.manual_seed(2)
    block = ModeAttention(24, groups=8, interaction=interaction).double().train(training)
    paper_reference.set_random_batch_norm(block, 2)
    x = torch.randn(3, 24, 4, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    slow, _, _ = paper_reference.mode_attention(block, x, training=training)
    fast = block.to(memory_format=torch.channels_last)(x)
    assert fast.is_contiguous(memory_format=torch.channels_last) and not fast.is_contiguous()
    _assert_matches(fast, slow, [x, *block.parameters()])


def test_strided_input_matches_contiguous():
    """A transposed or sliced view (neither NCHW- nor channels_last-contiguous) gives the same output."""
    block = ModeAttention(16, groups=4).double()
    paper_reference.set_random_batch_norm(block, 3)
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    strided = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous() and not strided.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(block(strided), block(x), atol=1e-12, rtol=1e-12)

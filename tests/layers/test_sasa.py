from __future__ import annotations

import copy

import pytest
import torch

from strabench.errors import ShapeError
import paper_reference
from strabench.layers.sasa import SASA


@pytest.mark.parametrize("channels,heads,kernel,stride,hw", [(16, 4, 3, 1, (5, 4)), (32, 8, 7, 1, (6, 5)), (16, 2, 5, 2, (6, 6)), (32, 8, 7, 2, (7, 3)), (8, 2, 3, 2, (5, 7))])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_the_equations(channels, heads, kernel, stride, hw, training):
    """SASA Eq. 2-3 written as loops over pixels, heads and window offsets (paper_reference.sasa);
    SASA has no batch statistics, so train and eval mode must agree with it alike."""
    torch.manual_seed(2)
    block = SASA(channels, heads=heads, kernel_size=kernel, stride=stride).double().train(training)
    x = torch.randn(2, channels, *hw, dtype=torch.float64, requires_grad=True)
    fast, slow = block(x), paper_reference.sasa(block, x)
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-7)
    w = torch.randn_like(fast)
    gf = torch.autograd.grad((fast * w).sum(), [x, *block.parameters()])
    gs = torch.autograd.grad((slow * w).sum(), [x, *block.parameters()])
    for a, b in zip(gf, gs):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-6)


def test_shapes_and_grads_reach_every_parameter():
    block = SASA(64, heads=8, kernel_size=7, stride=2).train()
    out = block(torch.randn(2, 64, 8, 6))
    assert out.shape == (2, 64, 4, 3)
    out.pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_window_is_local():
    """A query far from a perturbed pixel (outside the window) is unaffected by it."""
    block = SASA(16, heads=2, kernel_size=3).eval()
    x = torch.randn(1, 16, 8, 8)
    y = x.clone()
    y[:, :, 7, 7] += 5.0
    out_x, out_y = block(x), block(y)
    torch.testing.assert_close(out_x[..., :5, :5], out_y[..., :5, :5])
    assert not torch.allclose(out_x[..., 6:, 6:], out_y[..., 6:, 6:])


def test_bad_configuration():
    with pytest.raises(ValueError):
        SASA(30, heads=8)
    with pytest.raises(ShapeError):
        SASA(16, heads=2)(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize("hw", [(7, 7), (7, 4), (4, 5), (1, 3), (9, 9)])
def test_stride_2_rounds_up_like_the_shortcut_and_averages_the_pixels_it_has(hw):
    """A stride-2 block is added to a stride-2 1x1 conv shortcut, which gives ceil(H/2) x ceil(W/2):
    the block must give the same size on odd maps (the pooling used to round down and the residual
    add crashed). Each output is the mean of the stride-1 attention outputs its 2x2 window covers,
    computed here by slicing, not by the block's pooling."""
    torch.manual_seed(3)
    h, w = hw
    strided = SASA(16, heads=2, kernel_size=3, stride=2).double().eval()
    dense = SASA(16, heads=2, kernel_size=3, stride=1).double().eval()
    dense.load_state_dict(strided.state_dict())
    x = torch.randn(2, 16, h, w, dtype=torch.float64)
    shortcut = torch.nn.Conv2d(16, 16, 1, stride=2).double()(x)
    out = strided(x)
    assert out.shape == shortcut.shape == (2, 16, (h + 1) // 2, (w + 1) // 2)
    full = dense(x)
    expected = torch.empty_like(out)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            expected[:, :, i, j] = full[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(2, 3))
    torch.testing.assert_close(out, expected)
    assert torch.isfinite((out + shortcut).sum())


# --- the SDPA implementation (kernels="fused") against the dense one (kernels="stock") -----------


@pytest.mark.parametrize("channels,heads,kernel,stride,hw", [
    (16, 4, 3, 1, (5, 4)), (32, 8, 7, 1, (6, 5)), (16, 2, 5, 2, (6, 6)), (64, 8, 7, 1, (16, 8)), (8, 2, 9, 1, (3, 7)),
    (16, 4, 3, 1, (1, 1)),
])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_sdpa_matches_the_dense_formulation_in_float64(channels, heads, kernel, stride, hw, training):
    """The fused (SDPA, relative logits folded into the keys) and stock (dense logits) forms: the
    same outputs and gradients to float64 rounding, windows larger than the map included."""
    from strabench.layers.kernels import use_kernels

    torch.manual_seed(4)
    fused = SASA(channels, heads=heads, kernel_size=kernel, stride=stride).double().train(training)
    stock = use_kernels(copy.deepcopy(fused), "stock")
    x = torch.randn(2, channels, *hw, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out, want = fused(x), stock(x2)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-12)
    proj = torch.randn_like(out)
    got_grads = torch.autograd.grad((out * proj).sum(), [x, *fused.parameters()])
    want_grads = torch.autograd.grad((want * proj).sum(), [x2, *stock.parameters()])
    for name, a, b in zip(["input", *(n for n, _ in fused.named_parameters())], got_grads, want_grads):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11, msg=lambda m, n=name: f"{n}: {m}")


def test_sdpa_gradcheck():
    from strabench.layers.sasa import SASAttention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 12, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rel_row, rel_col = (torch.randn(2, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda *a: SASAttention.apply(*a, 4, 3, 3, True), (q, k, v, rel_row, rel_col))


def test_each_form_runs_what_it_says():
    from strabench.layers.kernels import implementations, use_kernels

    block = SASA(32, heads=4, kernel_size=3).eval()
    x = torch.randn(1, 32, 6, 5)
    assert implementations(block, x) == {"SASA": "SDPA"}
    assert implementations(use_kernels(block, "stock"), x) == {"SASA": "torch ops"}

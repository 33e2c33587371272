"""ModeAttention's inference kernel (``_mode_fast``): the output of the paper's equations
(float64 pixel loops) wherever it runs, at both vector widths; the modules wherever a gradient
is recorded, a batch norm uses batch statistics, or something observes or changes the block."""

from __future__ import annotations

import copy
import ctypes

import pytest
import torch
from torch import Tensor, nn

import paper_reference
from kernel_checks import at_one_and_two_threads, spy_calls
from strabench.layers import _local_kernel, _mode_fast
from strabench.layers.mode_attention import ModeAttention
from strabench.measure.traffic import count_bytes, tensor_bytes

pytestmark = pytest.mark.skipif(
    not isinstance(_local_kernel._load(), ctypes.CDLL), reason=f"no fused kernel here: {_local_kernel.status()}"
)


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the block took the kernel."""
    return spy_calls(monkeypatch, _mode_fast, "forward")


def _block(c: int, g: int, interaction: bool, dtype: torch.dtype = torch.float32, seed: int = 0) -> ModeAttention:
    """An eval-mode block with non-trivial batch norms and weights large enough that the masks,
    the gates and the mixing are far from uniform (a dropped term shows)."""
    torch.manual_seed(seed)
    m = ModeAttention(c, groups=g, interaction=interaction).to(dtype).eval()
    paper_reference.set_random_batch_norm(m, seed)
    with torch.no_grad():
        for p in m.mask.parameters():
            p.mul_(3)
    return m


def _reference(m: ModeAttention, x: Tensor) -> Tensor:
    with torch.no_grad():
        out, _, _ = paper_reference.mode_attention(copy.deepcopy(m).double(), x.double(), training=False)
    return out


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 2e-6, "rtol": 2e-6}


CASES = [  # (B, C, G, H, W): layer4's 16 x 8 map, vector tails (5 x 1, 7 x 9), one pixel, one mode, C/G = 10
    (2, 64, 8, 16, 8), (3, 24, 3, 5, 1), (2, 32, 8, 1, 1), (2, 40, 4, 7, 9), (1, 16, 1, 3, 5),
]


@pytest.mark.parametrize(("b", "c", "g", "h", "w"), CASES)
@pytest.mark.parametrize("interaction", [True, False], ids=["interaction", "no-interaction"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_matches_the_equations(b, c, g, h, w, interaction, dtype, width, fast_calls) -> None:
    m = _block(c, g, interaction, dtype)
    x = torch.randn(b, c, h, w, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert fast_calls == [1]
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


def test_inference_mode_and_frozen_parameters_take_the_kernel(fast_calls) -> None:
    """A deployed model: ``inference_mode``, or eval with no parameter requiring a gradient."""
    m = _block(32, 8, True)
    x = torch.randn(2, 32, 4, 3)
    with torch.inference_mode():
        first = m(x)
    m.requires_grad_(False)
    second = m(x)
    assert fast_calls == [1, 1]
    assert torch.equal(first, second)
    torch.testing.assert_close(first.double(), _reference(m, x), **_tol(torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_biases_and_plain_batch_norms(dtype, fast_calls) -> None:
    """Biases on the mask branch's convs and BNs without affine parameters (weight 1, bias 0)."""
    m = _block(24, 4, True, dtype)
    torch.manual_seed(3)
    m.mask[0] = nn.Conv2d(24, 32, 1, groups=4, bias=True).to(dtype)
    m.mask[3] = nn.Conv2d(32, 4, 1, groups=4, bias=True).to(dtype)
    with torch.no_grad():
        m.mask[3].bias.copy_(torch.tensor([2.0, -3.0, 0.5, 7.0]))  # per-mode shifts: cancel in the softmax
        m.mask[0].bias.mul_(5)
    plain = nn.BatchNorm2d(4, affine=False).to(dtype).eval()
    plain.running_mean.fill_(0.3)
    plain.running_var.fill_(2.0)
    m.gate1_bn = plain
    x = torch.randn(2, 24, 5, 4, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert fast_calls == [1]
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_values(dtype, fast_calls) -> None:
    """Masks saturated to one pixel (logits 1e3 apart), gates saturated at 0 and 1 (logits +-1e4)."""
    m = _block(32, 4, True, dtype)
    with torch.no_grad():
        m.mask[4].weight.fill_(1e3)
        m.gate1_bn.weight.fill_(1e4)
        m.gate2_bn.weight.copy_(torch.tensor([-1e4, 1e4, 1.0, -1.0]))
    x = torch.randn(2, 32, 6, 5, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert fast_calls == [1]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_mode_of_zeros(dtype, fast_calls) -> None:
    """A mode whose channels are all 0: its row of Z Z^T is 0, so the row norm's clamp decides
    (the equations leave it out, so the modules are the reference here), and its output is its
    share of the mixed modal vectors, not 0."""
    m = _block(32, 4, True, dtype)
    x = torch.randn(2, 32, 3, 3, dtype=dtype)
    x[:, :8] = 0
    with torch.no_grad():
        out = m(x)
    assert fast_calls == [1]
    assert out[:, :8].abs().amax() > 1e-2
    torch.testing.assert_close(out, m(x), **_tol(dtype))  # grad enabled: the modules run


def test_kernel_does_not_depend_on_the_thread_count() -> None:
    """Every work item sums in a fixed order: 1 and 2 threads give the same bits."""
    m = _block(64, 8, True)
    x = torch.randn(4, 64, 9, 8)
    with torch.no_grad():
        one, two = at_one_and_two_threads(lambda: m(x))
    assert torch.equal(one, two)


def test_traffic_counts_the_kernel() -> None:
    m = _block(32, 4, True)
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        traffic = count_bytes(lambda: m(x))
    params = sum(tensor_bytes(p) for p in m.parameters())
    stats = sum(tensor_bytes(t) for n, t in m.named_buffers() if "running" in n)
    assert traffic.by_op == {"mode_attention_fused": 2 * tensor_bytes(x) + params + stats}


def _hook_block(m: nn.Module) -> None:
    m.register_forward_hook(lambda *_: None)


def _hook_child(m: nn.Module) -> None:
    m.mask[3].register_forward_pre_hook(lambda *_: None)


def _train_one_norm(m: nn.Module) -> None:
    m.mask[1].train()


def _batch_statistics(m: nn.Module) -> None:
    m.gate1_bn = nn.BatchNorm2d(8, track_running_stats=False)


def _relu(m: nn.Module) -> None:
    m.mask[2] = nn.ReLU()


def _dense_conv(m: nn.Module) -> None:
    m.mask[0] = nn.Conv2d(32, 64, 1)


def _no_grad(m: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return m(x)


def _autocast(m: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return m(x)


def _global_hook(m: nn.Module, x: Tensor) -> Tensor:
    handle = nn.modules.module.register_module_forward_hook(lambda *_: None)
    try:
        return _no_grad(m, x)
    finally:
        handle.remove()


@pytest.mark.parametrize(
    ("change", "run"),
    [
        (None, lambda m, x: m(x)),  # eval, but the parameters' gradients would be recorded
        (None, lambda m, x: m.train()(x)),
        (None, lambda m, x: _no_grad(m.train(), x)),
        (_hook_block, _no_grad), (_hook_child, _no_grad), (_train_one_norm, _no_grad),
        (_batch_statistics, _no_grad), (_relu, _no_grad), (_dense_conv, _no_grad),
        (None, lambda m, x: _no_grad(m, x.contiguous(memory_format=torch.channels_last))),
        (None, lambda m, x: _no_grad(m, x.transpose(2, 3).contiguous().transpose(2, 3))),
        (None, lambda m, x: _no_grad(m.to(torch.bfloat16), x.bfloat16())),
        (None, _autocast),
        (None, lambda m, x: torch.jit.trace(m, x, check_trace=False)(x)),
        (None, _global_hook),
    ],
    ids=["grad", "train", "train-no-grad", "hooked", "hooked-child", "one-bn-training", "batch-statistics",
         "relu", "dense-conv", "channels-last", "strided", "bf16", "autocast", "jit-trace", "global-hook"],
)
def test_modules_run_where_the_kernel_must_not(change, run, fast_calls) -> None:
    m = _block(32, 8, True)
    if change is not None:
        change(m)
    x = torch.randn(2, 32, 5, 6)
    assert run(m, x).shape == (2, 32, 5, 6)
    assert fast_calls == []


def test_without_the_kernels_the_modules_run(monkeypatch, fast_calls) -> None:
    monkeypatch.setattr(_local_kernel, "available", lambda: False)
    m = _block(16, 4, True)
    x = torch.randn(2, 16, 5, 5)
    assert not _mode_fast.applies(m, x)
    _no_grad(m, x)
    assert fast_calls == []


def test_kernel_shows_under_the_profiler() -> None:
    from torch.profiler import profile

    m = _block(16, 4, True)
    with profile() as prof, torch.no_grad():
        m(torch.randn(1, 16, 4, 4))
    assert "strabench::ma_forward" in {e.key for e in prof.key_averages()}

"""ModeAttention fused for inference (``fuse_for_inference``: one ``strabench::mode_attention_infer``
call): the output of the paper's equations (float64 pixel loops) at both vector widths; the
operator whatever observes the block; plain torch ops where the input or an explicit step says so."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import paper_reference
from kernel_checks import at_one_and_two_threads, spy_calls
from strabench.layers import _local_kernel
from strabench.layers.kernels import fuse_for_inference, use_kernels
from strabench.layers.mode_attention import ModeAttention
from strabench.layers.pointwise import GroupedPointwiseConv
from strabench.measure.traffic import count_bytes, tensor_bytes

pytestmark = pytest.mark.requires_kernels


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of the whole-block inference kernel."""
    return spy_calls(monkeypatch, _local_kernel, "mode_attention_forward")


def _block(c: int, g: int, interaction: bool, dtype: torch.dtype = torch.float32, seed: int = 0,
           fuse: bool = True) -> ModeAttention:
    """An eval-mode block with non-trivial batch norms and weights large enough that the masks,
    the gates and the mixing are far from uniform (a dropped term shows)."""
    torch.manual_seed(seed)
    m = ModeAttention(c, groups=g, interaction=interaction).to(dtype).eval()
    paper_reference.set_random_batch_norm(m, seed)
    with torch.no_grad():
        for p in m.mask.parameters():
            p.mul_(3)
    if fuse:
        assert fuse_for_inference(m) == [""]
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
def test_inference_matches_the_equations(b, c, g, h, w, interaction, dtype, width, kernel_calls) -> None:
    m = _block(c, g, interaction, dtype)
    x = torch.randn(b, c, h, w, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert kernel_calls == [1]
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


def test_inference_mode_and_frozen_parameters(kernel_calls) -> None:
    """A deployed model: ``inference_mode``, or eval with no parameter requiring a gradient."""
    m = _block(32, 8, True)
    x = torch.randn(2, 32, 4, 3)
    with torch.inference_mode():
        first = m(x)
    m.requires_grad_(False)
    second = m(x)
    assert kernel_calls == [1, 1]
    assert torch.equal(first, second)
    torch.testing.assert_close(first.double(), _reference(m, x), **_tol(torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_biases_and_plain_batch_norms(dtype, kernel_calls) -> None:
    """Biases on the mask branch's convs and BNs without affine parameters (weight 1, bias 0)."""
    m = _block(24, 4, True, dtype, fuse=False)
    torch.manual_seed(3)
    m.mask[0] = GroupedPointwiseConv(24, 32, groups=4, bias=True).to(dtype)
    m.mask[3] = nn.Conv2d(32, 4, 1, groups=4, bias=True).to(dtype)
    with torch.no_grad():
        m.mask[3].bias.copy_(torch.tensor([2.0, -3.0, 0.5, 7.0]))  # per-mode shifts: cancel in the softmax
        m.mask[0].bias.mul_(5)
    plain = nn.BatchNorm2d(4, affine=False).to(dtype).eval()
    plain.running_mean.fill_(0.3)
    plain.running_var.fill_(2.0)
    m.gate1_bn = plain
    assert fuse_for_inference(m) == [""]
    x = torch.randn(2, 24, 5, 4, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert kernel_calls == [1]
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_values(dtype, kernel_calls) -> None:
    """Masks saturated to one pixel (logits 1e3 apart), gates saturated at 0 and 1 (logits +-1e4)."""
    m = _block(32, 4, True, dtype)
    with torch.no_grad():
        m.mask[4].weight.fill_(1e3)
        m.gate1_bn.weight.fill_(1e4)
        m.gate2_bn.weight.copy_(torch.tensor([-1e4, 1e4, 1.0, -1.0]))
    x = torch.randn(2, 32, 6, 5, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert kernel_calls == [1]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_mode_of_zeros(dtype, kernel_calls) -> None:
    """A mode whose channels are all 0: its row of Z Z^T is 0, so the row norm's clamp decides
    (the equations leave it out, so the unfused block is the reference here), and its output is
    its share of the mixed modal vectors, not 0."""
    m = _block(32, 4, True, dtype)
    x = torch.randn(2, 32, 3, 3, dtype=dtype)
    x[:, :8] = 0
    with torch.no_grad():
        out = m(x)
        want = use_kernels(copy.deepcopy(m), "fused")(x)
    assert kernel_calls == [1]
    assert out[:, :8].abs().amax() > 1e-2
    torch.testing.assert_close(out, want, **_tol(dtype))


def test_kernel_does_not_depend_on_the_thread_count() -> None:
    """Every work item sums in a fixed order: 1 and 2 threads give the same bits."""
    m = _block(64, 8, True)
    x = torch.randn(4, 64, 9, 8)
    with torch.no_grad():
        one, two = at_one_and_two_threads(lambda: m(x))
    assert torch.equal(one, two)


def test_traffic_counts_the_operator() -> None:
    m = _block(32, 4, True)
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        traffic = count_bytes(lambda: m(x))
    params = sum(tensor_bytes(p) for p in m.parameters())
    stats = sum(tensor_bytes(t) for n, t in m.named_buffers() if "running" in n)
    assert traffic.by_op == {"mode_attention_infer": 2 * tensor_bytes(x) + params + stats}


def test_hooks_and_the_profiler_see_the_operator_that_runs(kernel_calls) -> None:
    from torch.profiler import profile

    m = _block(16, 4, True)
    fired: list[str] = []
    m.register_forward_hook(lambda *_: fired.append("block"))
    handle = nn.modules.module.register_module_forward_hook(lambda *_: fired.append("global"))
    try:
        with profile() as prof, torch.no_grad():
            m(torch.randn(1, 16, 4, 4))
    finally:
        handle.remove()
    assert fired == ["global", "block"] and kernel_calls == [1]
    assert "strabench::mode_attention_infer" in {e.key for e in prof.key_averages()}


def _autocast(m: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return m(x)


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x: m(x.contiguous(memory_format=torch.channels_last)),
        lambda m, x: m(x.transpose(2, 3).contiguous().transpose(2, 3)),
        lambda m, x: m.to(torch.bfloat16)(x.bfloat16()),
    ],
    ids=["channels-last", "strided", "bf16"],
)
def test_inputs_the_kernel_does_not_take_run_the_decomposition(run, kernel_calls) -> None:
    """The decomposition computes what the unfused block computes, in the same precision."""
    m = _block(32, 8, True)
    unfused = use_kernels(copy.deepcopy(m), "fused")
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        out, want = run(m, x), run(unfused, x)
    assert out.shape == (2, 32, 5, 6) and kernel_calls == []
    tol = 1e-5 if want.dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.double(), want.double(), atol=tol, rtol=tol)


def test_under_autocast_the_fused_block_runs_its_kernel_in_its_inputs_dtype(kernel_calls) -> None:
    m = _block(32, 8, True)
    x = torch.randn(2, 32, 5, 6)
    out = _autocast(m, x)
    assert kernel_calls == [1] and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _reference(m, x), **_tol(torch.float32))


def test_unfused_blocks_and_stock_never_run_the_inference_kernel(kernel_calls) -> None:
    x = torch.randn(2, 32, 5, 6)
    for m in (_block(32, 8, True, fuse=False), use_kernels(_block(32, 8, True), "stock")):
        with torch.no_grad():
            torch.testing.assert_close(m(x).double(), _reference(m, x), **_tol(torch.float32))
    assert kernel_calls == []

"""Grouped 1x1 convs through ``pointwise_conv``: the same outputs and gradients as the module,
and the module itself whenever something observes it (hooks, tracing, export)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from strabench.layers._pointwise import pointwise_conv, run_branch


def _ops(fn) -> list[str]:
    seen: list[str] = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Spy():
        fn()
    return seen


def _grouped(cin: int, cout: int, groups: int, bias: bool) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, 1, groups=groups, bias=bias).double()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("cin", "cout", "groups"), [(16, 16, 4), (16, 8, 4), (12, 24, 3)])
def test_matches_the_module_with_gradients(cin, cout, groups, batch, bias) -> None:
    conv = _grouped(cin, cout, groups, bias)
    x = torch.randn(batch, cin, 5, 3, dtype=torch.float64, requires_grad=True)
    ops = _ops(lambda: pointwise_conv(conv, x))
    assert "convolution" not in ops and ("matmul" in ops or "bmm" in ops)  # the matmul path ran
    fast, ref = pointwise_conv(conv, x), conv(x)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=1e-10)
    proj = torch.randn_like(ref)
    params = [x, *conv.parameters()]
    for gf, gr in zip(torch.autograd.grad((fast * proj).sum(), params), torch.autograd.grad((ref * proj).sum(), params)):
        torch.testing.assert_close(gf, gr, atol=1e-12, rtol=1e-10)


def test_channels_last_and_ungrouped_convs_run_the_module() -> None:
    conv = _grouped(16, 16, 4, True)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert "convolution" in _ops(lambda: pointwise_conv(conv, x))
    dense = nn.Conv2d(16, 16, 1).double()
    assert "convolution" in _ops(lambda: pointwise_conv(dense, torch.randn(2, 16, 4, 4, dtype=torch.float64)))


def test_an_observed_module_runs_itself() -> None:
    """Counters hook the conv (ptflops, the paper's counter) or trace it (fvcore): they must see it run."""
    conv = _grouped(16, 16, 4, False)
    x = torch.randn(1, 16, 4, 4, dtype=torch.float64)
    calls = []
    handle = conv.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    try:
        pointwise_conv(conv, x)
    finally:
        handle.remove()
    assert calls == [torch.Size([1, 16, 4, 4])]

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return pointwise_conv(self.conv, t)

    assert "aten::_convolution" in str(torch.jit.trace(Holder(), (x,)).inlined_graph)


def test_autocast_gives_the_modules_dtype() -> None:
    conv = nn.Conv2d(16, 8, 1, groups=4, bias=True)
    x = torch.randn(2, 16, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, ref = pointwise_conv(conv, x), conv(x)
    assert fast.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ref.float(), atol=3e-2, rtol=3e-2)


def test_run_branch_equals_the_sequential() -> None:
    torch.manual_seed(1)
    branch = nn.Sequential(nn.Conv2d(16, 8, 1, groups=4), nn.BatchNorm2d(8), nn.Tanh(), nn.Conv2d(8, 4, 1, groups=4)).double().eval()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(run_branch(branch, x), branch(x), atol=1e-12, rtol=1e-10)

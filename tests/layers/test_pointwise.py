"""GroupedPointwiseConv: an ``nn.Conv2d`` (state_dict, hooks, counters) whose forward runs the
``strabench::grouped_pointwise`` operator where its kernel takes the input; outputs and gradients
are the stock convolution's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kernel_checks import spy_calls
from strabench.layers import _local_kernel
from strabench.layers.kernels import use_kernels
from strabench.layers.pointwise import GroupedPointwiseConv


def _pair(cin: int, cout: int, groups: int, bias: bool) -> tuple[GroupedPointwiseConv, nn.Conv2d]:
    torch.manual_seed(0)
    fast = GroupedPointwiseConv(cin, cout, groups=groups, bias=bias).double()
    stock = nn.Conv2d(cin, cout, 1, groups=groups, bias=bias).double()
    stock.load_state_dict(fast.state_dict())
    return fast, stock


@pytest.mark.requires_kernels
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("cin", "cout", "groups"), [(16, 16, 4), (16, 8, 4), (12, 24, 3)])
def test_matches_the_stock_conv_with_gradients(cin, cout, groups, batch, bias, monkeypatch) -> None:
    calls = spy_calls(monkeypatch, _local_kernel, "pointwise_forward")
    fast, stock = _pair(cin, cout, groups, bias)
    x = torch.randn(batch, cin, 5, 3, dtype=torch.float64, requires_grad=True)
    out, ref = fast(x), stock(x)
    assert calls == [1]
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    proj = torch.randn_like(ref)
    got = torch.autograd.grad((out * proj).sum(), [x, *fast.parameters()])
    want = torch.autograd.grad((ref * proj).sum(), [x, *stock.parameters()])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-10)


def test_is_a_conv2d_with_its_state_dict_and_hooks() -> None:
    fast, stock = _pair(16, 8, 4, True)
    assert isinstance(fast, nn.Conv2d) and fast.state_dict().keys() == stock.state_dict().keys()
    seen = []
    fast.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    fast(torch.randn(2, 16, 3, 3, dtype=torch.float64))
    assert seen == [torch.Size([2, 8, 3, 3])]


@pytest.mark.parametrize(
    "run",
    [lambda m, x: m(x.contiguous(memory_format=torch.channels_last)), lambda m, x: use_kernels(m, "stock")(x),
     lambda m, x: m.float()(x.float()) if False else m.bfloat16()(x.bfloat16())],
    ids=["channels-last", "stock", "bf16"],
)
def test_the_stock_conv_runs_where_the_kernel_does_not_take_the_input_or_stock_is_asked(run, monkeypatch) -> None:
    calls = spy_calls(monkeypatch, _local_kernel, "pointwise_forward")
    fast, stock = _pair(16, 16, 4, True)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    out = run(fast, x)
    assert calls == []
    torch.testing.assert_close(out.double(), stock(x), atol=3e-2, rtol=3e-2)


def test_autocast_gives_the_stock_convs_dtype() -> None:
    fast, stock = _pair(16, 8, 4, True)
    fast, stock = fast.float(), stock.float()
    x = torch.randn(2, 16, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = fast(x), stock(x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=3e-2, rtol=3e-2)

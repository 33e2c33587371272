"""The pure-tensor local attention (the decomposition an ONNX export traces) against float64
references written from the equations, and the explicit step that picks it (``ops.decomposed()``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

import paper_reference
from strabench.layers import _local_ops, ops
from strabench.layers._local_traceable import (
    traceable_gather_neighbours,
    traceable_neighbour_windows,
    traceable_weighted_sum,
)
from strabench.layers.local_attention import LocalAttention


@pytest.mark.parametrize(("kernel_size", "stride", "h", "w"), [(3, 1, 5, 6), (3, 2, 5, 6), (5, 1, 4, 5), (5, 2, 6, 5), (3, 3, 4, 2)])
def test_weighted_sum_matches_loops_forward_and_gradients(kernel_size: int, stride: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(0)
    attn = torch.randn(2, 4, kernel_size**2, paper_reference.out_size(h, kernel_size, stride), paper_reference.out_size(w, kernel_size, stride), generator=gen,
                       dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 12, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    got = traceable_weighted_sum(attn, value, kernel_size, stride)
    want = paper_reference.weighted_sum_loops(attn, value, kernel_size, stride)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    proj = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    for g, wnt in zip(torch.autograd.grad((got * proj).sum(), [attn, value]),
                      torch.autograd.grad((want * proj).sum(), [attn, value])):
        torch.testing.assert_close(g, wnt, atol=1e-12, rtol=1e-12)


def test_gather_neighbours_matches_loops() -> None:
    t = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    for k, s, fill in [(3, 1, 0.0), (3, 2, float("-inf")), (5, 1, 7.0), (5, 2, 0.0)]:
        got = traceable_gather_neighbours(t, k, s, fill)
        torch.testing.assert_close(got, paper_reference.gather_neighbours_loops(t, k, s, fill))
        windows = traceable_neighbour_windows(t, k, s, fill)  # the same, offsets as (ky, kx)
        assert windows.shape == (2, 3, k, k, *got.shape[-2:])
        torch.testing.assert_close(windows.flatten(2, 3), got)


@pytest.fixture
def capturing():
    """LocalAttention as an exporter sees it: every operator decomposed, run eagerly."""
    with ops.decomposed():
        yield


@pytest.mark.parametrize("border", ["zero", "mask"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_block_through_the_traceable_path_matches_the_pixel_loop_reference(capturing: None, border: str, stride: int, training: bool) -> None:
    torch.manual_seed(0)
    m = LocalAttention(16, groups=4, stride=stride, border=border).double().train(training)
    paper_reference.set_random_batch_norm(m)
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64, requires_grad=True)
    out = m(x)
    m_ref, x_ref = copy.deepcopy(m), x.detach().clone().requires_grad_()
    want, _ = paper_reference.local_attention(m_ref, x_ref, training=training)
    torch.testing.assert_close(out, want, atol=1e-10, rtol=1e-10)
    proj = torch.randn_like(out)
    got_grads = torch.autograd.grad((out * proj).sum(), [x, *m.parameters()])
    want_grads = torch.autograd.grad((want * proj).sum(), [x_ref, *m_ref.parameters()])
    for name, g, w in zip(["input", *(n for n, _ in m.named_parameters())], got_grads, want_grads):
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g, w, atol=1e-9 * scale, rtol=1e-9, msg=lambda msg, n=name: f"{n}: {msg}")


def test_the_traceable_path_is_used_only_inside_decomposed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = traceable_weighted_sum

    def spy(*args):  # noqa: ANN002, ANN202
        calls.append("traceable")
        return real(*args)

    monkeypatch.setattr("strabench.layers._local_traceable.traceable_weighted_sum", spy)
    monkeypatch.setattr("strabench.layers._decompositions.traceable_weighted_sum", spy)
    attn, value = torch.rand(1, 2, 9, 4, 4), torch.randn(1, 4, 4, 4)
    for kernel in ("auto", "shifted"):
        _local_ops.local_weighted_sum(attn, value, 3, 1, kernel=kernel)
    assert calls == []  # eager: the operator, or the op-per-pass weighting
    traced = torch.jit.trace(lambda a, v: _local_ops.local_weighted_sum(a, v, 3, 1, kernel="shifted"), (attn, value))
    names = [f"{n.kind()}.{n.pyname()}" for n in traced.inlined_graph.nodes() if n.kind() == "prim::PythonOp"]
    assert calls == [] and names == [_local_ops.LOCAL_WEIGHTED_SUM_OP_NAME]  # what fvcore counts
    torch.compile(lambda a, v: _local_ops.local_weighted_sum(a, v, 3, 1), backend="eager")(attn, value)
    assert calls == []  # a compiler sees the operator, opaque
    for kernel in ("auto", "shifted"):
        with ops.decomposed():
            _local_ops.local_weighted_sum(attn, value, 3, 1, kernel=kernel)
    assert calls == ["traceable", "traceable"]

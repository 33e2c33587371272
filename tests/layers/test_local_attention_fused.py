"""LocalAttention on StRA's operators: the outputs and gradients of the paper's equations (float64
pixel loops) at both vector widths of the kernels; the same operators whatever observes the block
(hooks, the profiler, traces); plain torch ops only where the input or an explicit step says so;
one call per block after ``fuse_for_inference``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import paper_reference
from kernel_checks import VECTOR_WIDTHS, at_one_and_two_threads, spy_calls, vector_width
from strabench.errors import ConfigError
from strabench.layers import _local_kernel, ops
from strabench.layers.kernels import fuse_for_inference, use_kernels
from strabench.layers.local_attention import LocalAttention
from strabench.layers.pointwise import GroupedPointwiseConv
from strabench.measure.traffic import count_bytes, tensor_bytes

pytestmark = pytest.mark.requires_kernels


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Calls of the C kernels the block's operators run (each still runs)."""
    names = ("attention_forward", "attention_backward", "pointwise_forward", "forward", "local_attention_infer")
    return {name: spy_calls(monkeypatch, _local_kernel, name) for name in names}


def _block(c: int, g: int, k: int, border: str, dtype: torch.dtype, seed: int = 0, **kw) -> LocalAttention:
    torch.manual_seed(seed)
    m = LocalAttention(c, groups=g, kernel_size=k, border=border, **kw).to(dtype)
    paper_reference.set_random_batch_norm(m, seed)
    with torch.no_grad():  # biases that matter, so a dropped one shows
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def _grads(out: Tensor, proj: Tensor, wrt: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(out, wrt, proj))


def _assert_close(got: list[Tensor], want: list[Tensor], names: list[str], tol: float) -> None:
    """Each within ``tol`` of its own scale; a gradient that is 0 in maths (the biases before a
    train-mode BN) is float noise on both sides, within ``tol`` of the largest one's scale."""
    top = max(w.abs().max().item() for w in want)
    for name, g, w in zip(names, got, want):
        scale = max(1.0, w.abs().max().item() if w.abs().max() > 1e-3 else top)
        torch.testing.assert_close(g.double(), w, atol=tol * scale, rtol=tol, msg=lambda m, n=name: f"{n}: {m}")


def _check_against_equations(m: LocalAttention, x: Tensor, tol: float, reference: list[Tensor] | None = None) -> list[Tensor]:
    """m(x) and its gradients (input, every parameter) against the float64 pixel loops; the
    output, and the loops' values (``reference``: the ones of an earlier call with this m and x)."""
    x = x.clone().requires_grad_()
    out = m(x)
    proj = torch.Generator().manual_seed(1)  # the same projection for every call with this m and x
    proj = torch.randn(out.shape, generator=proj, dtype=out.dtype)
    names = ["out", "input", *(n for n, _ in m.named_parameters())]
    got = [out, *_grads(out, proj, [x, *m.parameters()])]
    if reference is None:
        m64, x64 = copy.deepcopy(m).double(), x.detach().double().requires_grad_()
        ref, _ = paper_reference.local_attention(m64, x64, training=m.training)
        reference = [ref.detach(), *_grads(ref, proj.double(), [x64, *m64.parameters()])]
    _assert_close(got, reference, names, tol)
    return [out.detach(), *reference]


CASES = [  # (B, C, G, K, H, W, border)
    (2, 64, 8, 3, 16, 8, "zero"),  # StRA-ResNet-50's layer4 map, narrower
    (3, 40, 4, 3, 7, 7, "mask"),  # 49 pixels: vector tails everywhere; 10 channels and 3 hidden per group
    (2, 24, 8, 5, 5, 3, "zero"),  # K = 5 (the generic attention gradient), 3 channels per group
    (2, 16, 4, 1, 6, 9, "mask"),  # K = 1
    (2, 32, 2, 3, 1, 1, "zero"),  # a 1x1 map: every neighbour but the centre is outside
    (1, 96, 8, 3, 12, 20, "mask"),  # batch 1
    (4, 8, 1, 3, 3, 33, "zero"),  # one group, a wide row
]


@pytest.mark.parametrize(("b", "c", "g", "k", "h", "w", "border"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_matches_the_equations(b, c, g, k, h, w, border, dtype, kernel_calls) -> None:
    # float32 against exact float64: a train-mode BN backward in float32 is off by ~5e-5 of the
    # gradient's scale (as for the modules); the pre-BN biases' exact gradients are 0. Both vector
    # widths against one run of the loops (most of the test's time).
    m = _block(c, g, k, border, dtype)
    x = torch.randn(b, c, h, w, dtype=dtype)
    reference = None
    for name, nbytes in VECTOR_WIDTHS.items():
        for calls in kernel_calls.values():
            calls.clear()
        with vector_width(nbytes):
            reference = _check_against_equations(m, x, 1e-10 if dtype == torch.float64 else 1e-4, reference)[1:]
        assert len(kernel_calls["attention_forward"]) == len(kernel_calls["attention_backward"]) == 1, name
        assert len(kernel_calls["pointwise_forward"]) == 3, name  # value, branch[0], branch[3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eval_mode_matches_the_equations(dtype, width, kernel_calls) -> None:
    m = _block(48, 8, 3, "zero", dtype).eval()
    x = torch.randn(2, 48, 6, 5, dtype=dtype)
    out = _check_against_equations(m, x, 1e-10 if dtype == torch.float64 else 2e-5)[0]
    with torch.inference_mode():
        torch.testing.assert_close(m(x), out)
    assert len(kernel_calls["attention_forward"]) == 2 and not kernel_calls["local_attention_infer"]


def test_gradcheck_float64(kernel_calls) -> None:
    m = _block(8, 2, 3, "mask", torch.float64)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    assert kernel_calls["attention_backward"]


# --- what observes the block does not change what runs -------------------------------------------


def _hook_block(m: nn.Module, fired: list[str]) -> None:
    m.register_forward_hook(lambda *_: fired.append("block"))


def _hook_child(m: nn.Module, fired: list[str]) -> None:
    m.branch[3].register_forward_pre_hook(lambda *_: fired.append("child"))


def _backward_hook(m: nn.Module, fired: list[str]) -> None:
    m.value.register_full_backward_hook(lambda *_: fired.append("backward"))


def _global_hook(m: nn.Module, fired: list[str]):
    return nn.modules.module.register_module_forward_hook(lambda *_: fired.append("global"))


@pytest.mark.parametrize("observe", [_hook_block, _hook_child, _backward_hook, _global_hook],
                         ids=["block-hook", "child-hook", "backward-hook", "global-hook"])
def test_a_hook_sees_the_block_that_runs_the_fused_operators(observe, kernel_calls) -> None:
    m = _block(16, 4, 3, "zero", torch.float32)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    want = m(x)
    fired: list[str] = []
    handle = observe(m, fired)
    try:
        out = m(x)
        out.sum().backward()
    finally:
        if handle is not None:
            handle.remove()
    assert fired, "the hook did not fire"
    assert torch.equal(out, want)
    assert len(kernel_calls["attention_forward"]) == 2 and len(kernel_calls["attention_backward"]) == 1


def test_the_profiler_and_a_trace_see_the_operators_that_run() -> None:
    from torch.profiler import profile

    m = _block(32, 4, 3, "zero", torch.float32)
    x = torch.randn(2, 32, 5, 6, requires_grad=True)
    with profile() as prof:
        m(x).sum().backward()
    names = {e.key for e in prof.key_averages()}
    for op in ("grouped_pointwise", "local_attention", "local_attention_backward", "grouped_pointwise_backward_input",
               "grouped_pointwise_backward_weight"):
        assert f"strabench::{op}" in names, op
    traced = torch.jit.trace(m.eval(), (x.detach(),), check_trace=False)
    kinds = [n.kind() for n in traced.inlined_graph.nodes()]
    assert kinds.count("strabench::grouped_pointwise") == 3 and kinds.count("strabench::local_attention") == 1
    torch.testing.assert_close(traced(x.detach()), m(x.detach()))


def test_traffic_counts_the_operators() -> None:
    """The byte counter sees the operators like any aten op: their tensors in and out."""
    m = _block(32, 4, 3, "zero", torch.float32)
    x = torch.randn(2, 32, 5, 6, requires_grad=True)
    traffic = count_bytes(lambda: m(x).sum().backward())
    act = tensor_bytes(x)
    for name in ("grouped_pointwise", "local_attention", "local_attention_backward", "grouped_pointwise_backward_input",
                 "grouped_pointwise_backward_weight"):
        assert traffic.by_op[name] > 0, name
    # the attention's forward: logits (G*(K*K+1) = 40 maps) and value in; out and the softmax out
    logits, attn = act * 40 // 32, act * 4 * 9 // 32
    assert traffic.by_op["local_attention"] == logits + act + act + attn


# --- where the C kernels do not apply, or are not asked for ------------------------------------


def _autocast(m: nn.Module, x: Tensor) -> Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return m(x)


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x: m.to(torch.bfloat16)(x.bfloat16()),
        _autocast,
        lambda m, x: use_kernels(m, "stock")(x),
    ],
    ids=["bf16", "autocast", "stock"],
)
def test_plain_torch_where_the_kernels_do_not_take_the_input_or_stock_is_asked(run, kernel_calls) -> None:
    m = _block(16, 4, 3, "zero", torch.float32)
    x = torch.randn(2, 16, 5, 6)
    out = run(m, x)
    assert out.shape == (2, 16, 5, 6)
    assert not any(kernel_calls.values()), {k: len(v) for k, v in kernel_calls.items()}


def test_a_strided_input_runs_the_stock_convs_then_the_operators_on_their_outputs(kernel_calls) -> None:
    m = _block(16, 4, 3, "zero", torch.float64)
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64).transpose(2, 3)  # neither NCHW nor channels_last
    _check_against_equations(m, x, 1e-10)
    # value and branch[0] read x: nn.Conv2d's forward; branch[3] and the attention read their outputs
    assert len(kernel_calls["pointwise_forward"]) == 1 and len(kernel_calls["attention_forward"]) == 1


def test_channels_last_runs_the_weighting_operator_and_keeps_the_layout(kernel_calls) -> None:
    m = _block(16, 4, 3, "zero", torch.float64)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    out = _check_against_equations(m, x, 1e-10)[0]
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert len(kernel_calls["forward"]) == 1 and not kernel_calls["attention_forward"]


@pytest.mark.parametrize("kw", [{"stride": 2}, {"impl": "shifted"}, {"impl": "unfold"}])
def test_other_impls_and_strides_run_plain_torch(kw, kernel_calls) -> None:
    m = LocalAttention(16, groups=4, **kw)
    m(torch.randn(2, 16, 6, 6))
    assert not kernel_calls["attention_forward"] and not kernel_calls["forward"]


def test_without_the_kernels_plain_torch_runs(monkeypatch, kernel_calls) -> None:
    monkeypatch.setattr(_local_kernel, "available", lambda: False)
    m = _block(16, 4, 3, "zero", torch.float64)
    _check_against_equations(m, torch.randn(2, 16, 5, 5, dtype=torch.float64), 1e-10)
    assert not any(kernel_calls.values())


@pytest.mark.parametrize(
    "replace",
    [lambda m: setattr(m.branch, "2", nn.ReLU()), lambda m: setattr(m.branch, "1", nn.GroupNorm(4, 8).double()),
     lambda m: setattr(m, "value", nn.Conv2d(32, 32, 1, groups=4, bias=True).double())],
    ids=["relu", "groupnorm", "stock-conv"],
)
def test_replaced_submodules_run_as_modules_around_the_attention_operator(replace, kernel_calls) -> None:
    fast = _block(32, 4, 3, "zero", torch.float64)
    replace(fast)
    stock = use_kernels(copy.deepcopy(fast), "stock")
    x = torch.randn(2, 32, 6, 4, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out, want = fast(x), stock(x2)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-12)
    proj = torch.randn_like(out)
    _assert_close(_grads(out, proj, [x, *fast.parameters()]), _grads(want, proj, [x2, *stock.parameters()]),
                  ["input", *(n for n, _ in fast.named_parameters())], 1e-11)
    assert len(kernel_calls["attention_forward"]) == 1


# --- fused for inference: the whole block in one call -------------------------------------------


def _inference_reference(m: LocalAttention, x: Tensor) -> Tensor:
    with torch.no_grad():
        return paper_reference.local_attention(copy.deepcopy(m).double(), x.double(), training=False)[0]


@pytest.mark.parametrize(("b", "c", "g", "k", "h", "w", "border"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_for_inference_matches_the_equations(b, c, g, k, h, w, border, dtype, width, kernel_calls) -> None:
    m = _block(c, g, k, border, dtype).eval()
    assert fuse_for_inference(m) == [""]
    x = torch.randn(b, c, h, w, dtype=dtype)
    with torch.no_grad():
        out = m(x)
    assert len(kernel_calls["local_attention_infer"]) == 1 and not kernel_calls["pointwise_forward"]
    _assert_close([out], [_inference_reference(m, x)], ["out"], 1e-10 if dtype == torch.float64 else 2e-6)


def test_fused_for_inference_with_a_value_bias_and_frozen_parameters(kernel_calls) -> None:
    m = _block(32, 4, 3, "zero", torch.float32).eval()
    m.value = GroupedPointwiseConv(32, 32, groups=4, bias=True)
    m.requires_grad_(False)  # a deployed model: eval, nothing requires a gradient
    fuse_for_inference(m)
    x = torch.randn(2, 32, 5, 6)
    out = m(x)
    assert len(kernel_calls["local_attention_infer"]) == 1
    _assert_close([out], [_inference_reference(m, x)], ["out"], 2e-6)


@pytest.mark.parametrize(
    "change",
    [lambda m: m.branch[4].train(), lambda m: setattr(m.branch, "2", nn.ReLU()),
     lambda m: setattr(m.branch, "1", nn.BatchNorm2d(m.branch[1].num_features, track_running_stats=False)),
     lambda m: setattr(m, "impl", "shifted"), lambda m: use_kernels(m, "stock")],
    ids=["one-bn-training", "relu", "batch-statistics", "shifted", "stock"],
)
def test_fuse_for_inference_leaves_blocks_it_cannot_fuse(change, kernel_calls) -> None:
    m = _block(32, 4, 3, "zero", torch.float32).eval()
    change(m)
    assert fuse_for_inference(m) == []
    with torch.no_grad():
        m(torch.randn(2, 32, 5, 6))
    assert not kernel_calls["local_attention_infer"]


def test_a_fused_block_refuses_training_and_gradients_in_one_line() -> None:
    m = _block(16, 4, 3, "zero", torch.float32).eval()
    with pytest.raises(ConfigError, match="needs a model in eval mode"):
        fuse_for_inference(m.train())
    fuse_for_inference(m.eval())
    x = torch.randn(2, 16, 4, 4)
    for run in (lambda: m(x), lambda: m.train()(x)):
        with pytest.raises(RuntimeError, match="was fused for inference") as info:
            run()
        assert "\n" not in str(info.value)
    use_kernels(m, "fused")  # undone: it trains again
    m(x).sum().backward()


def test_fused_for_inference_does_not_depend_on_the_thread_count() -> None:
    m = _block(64, 8, 3, "zero", torch.float32).eval()
    fuse_for_inference(m)
    x = torch.randn(4, 64, 9, 8)
    with torch.no_grad():
        one, two = at_one_and_two_threads(lambda: m(x))
    assert torch.equal(one, two)


def test_traffic_counts_the_inference_operator() -> None:
    m = _block(32, 4, 3, "zero", torch.float32).eval()
    fuse_for_inference(m)
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        traffic = count_bytes(lambda: m(x))
    params = sum(tensor_bytes(p) for p in m.parameters())
    stats = sum(tensor_bytes(t) for n, t in m.named_buffers() if "running" in n)
    assert traffic.by_op == {"local_attention_infer": 2 * tensor_bytes(x) + params + stats}


# --- the kernels themselves, against float64 einsums -------------------------------------------

SHAPES = [  # (B, G, M, K, H, W)
    (2, 8, 64, 64, 16, 8), (2, 3, 7, 5, 3, 11), (1, 2, 13, 70, 4, 4), (3, 1, 1, 1, 1, 1), (2, 8, 10, 16, 7, 7),
    (1, 4, 80, 3, 2, 40),
]


@pytest.mark.parametrize(("b", "g", "m", "k", "h", "w"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_pointwise_kernels_match_einsum(b, g, m, k, h, w, dtype, width) -> None:
    gen = torch.Generator().manual_seed(b * 1000 + m * 10 + k)
    x = torch.randn(b, g * k, h, w, generator=gen, dtype=dtype)
    w1, w2 = torch.randn(g, m, k, generator=gen, dtype=dtype), torch.randn(g, m + 2, k, generator=gen, dtype=dtype)
    bias = torch.randn(g * m, generator=gen, dtype=dtype)
    gy1 = torch.randn(b, g * m, h, w, generator=gen, dtype=dtype)
    gy2 = torch.randn(b, g * (m + 2), h, w, generator=gen, dtype=dtype)
    xg = x.double().view(b, g, k, h, w)

    def conv(weight: Tensor) -> Tensor:
        return torch.einsum("gmk,bgkhw->bgmhw", weight.double(), xg).reshape(b, -1, h, w)

    def grad_input(weight: Tensor, gy: Tensor) -> Tensor:
        return torch.einsum("gmk,bgmhw->bgkhw", weight.double(), gy.double().view(b, g, -1, h, w))

    tol = {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 2e-5}
    cases = {
        "forward": (_local_kernel.pointwise_forward(w1, None, x), conv(w1)),
        "forward+bias": (_local_kernel.pointwise_forward(w1, bias, x), conv(w1) + bias.double().view(1, -1, 1, 1)),
        "d input": (_local_kernel.pointwise_backward_input([(w1, gy1)]), grad_input(w1, gy1).reshape(x.shape)),
        "d input, two convs": (_local_kernel.pointwise_backward_input([(w1, gy1), (w2, gy2)]),
                               (grad_input(w1, gy1) + grad_input(w2, gy2)).reshape(x.shape)),
        "d weight": (_local_kernel.pointwise_backward_weight(gy1, x, g),
                     torch.einsum("bgmhw,bgkhw->gmk", gy1.double().view(b, g, m, h, w), xg)),
    }
    for name, (got, want) in cases.items():
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, **tol, msg=lambda msg, n=name: f"{n}: {msg}")
    assert torch.equal(_local_kernel.channels_last(x), x.contiguous(memory_format=torch.channels_last))


def _softmax_reference(logits: Tensor, k: int, h: int, w: int, mask: bool) -> Tensor:
    """float64 softmax over the window, neighbour by neighbour (zero border: nu = 0 outside)."""
    b, gk1 = logits.shape[:2]
    kk = k * k
    g = gk1 // (kk + 1)
    lg = logits.double().view(b, g, kk + 1, h, w)
    out = torch.zeros(b, g, kk, h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            terms, used = [], []
            for n, (dy, dx) in enumerate(paper_reference.window(k)):
                inside = 0 <= y + dy < h and 0 <= x + dx < w
                if not inside and mask:
                    continue
                nu = lg[:, :, kk, y + dy, x + dx] if inside else 0.0
                terms.append(lg[:, :, n, y, x] + nu)
                used.append(n)
            for n, a in zip(used, paper_reference.softmax(terms)):
                out[:, :, n, y, x] = a
    return out.view(b, g, kk, h * w)


def valid_mask(k: int, h: int, w: int, dtype: torch.dtype) -> Tensor:
    """(K*K, H*W): 1 where neighbour n of pixel p is inside the image."""
    valid = torch.zeros(k * k, h * w, dtype=dtype)
    for n, (dy, dx) in enumerate(paper_reference.window(k)):
        for y in range(h):
            for x in range(w):
                valid[n, y * w + x] = float(0 <= y + dy < h and 0 <= x + dx < w)
    return valid


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_kernel_softmax_on_extreme_logits(mask, dtype) -> None:
    """Logits spread over +-200 around an offset of 1e3, outside neighbours far above the rest:
    the softmax subtracts the max (of the neighbours it includes), and its exp is accurate to
    the last bits (and underflows to ~0, not to NaN)."""
    b, g, k, h, w = 2, 3, 3, 4, 5
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(b, g * 10, h, w, generator=gen, dtype=dtype) * 60 + 1e3
    logits[:, ::10] += torch.linspace(-200, 200, h * w, dtype=dtype).view(1, 1, h, w)
    logits[:, ::10, 0, :] += 3000  # offset (-1, -1) of the top row, outside: wins the "zero" softmax, not "mask"'s
    logits = torch.round(logits * 64) / 64  # omega + nu and the max subtracted are exact in float32 too
    value = torch.randn(b, g * 2, h, w, generator=gen, dtype=dtype)
    _, attn = ops.local_attention(logits, value, k, mask)
    want = _softmax_reference(logits, k, h, w, mask)
    tol = 1e-14 if dtype == torch.float64 else 2e-7
    torch.testing.assert_close(attn.double(), want, atol=tol, rtol=0)
    assert torch.isfinite(attn).all()
    if mask:
        assert (attn.view(b, g, 9, h * w)[:, :, valid_mask(k, h, w, dtype) == 0] == 0).all()


def test_kernels_do_not_depend_on_the_thread_count() -> None:
    """Every work item sums in a fixed order: 1 and 2 threads give the same bits."""
    m = _block(64, 8, 3, "zero", torch.float32)
    x = torch.randn(4, 64, 9, 8)

    def kernels() -> list[Tensor]:
        w = m.value.weight.detach().view(8, 8, 8)
        gy = torch.ones(4, 64, 9, 8).cumsum(1) / 64
        logits = torch.randn(4, 80, 9, 8, generator=torch.Generator().manual_seed(0))
        valid = valid_mask(3, 9, 8, torch.float32)
        out, attn = _local_kernel.attention_forward(logits, valid, x, 3, False)
        return [_local_kernel.pointwise_forward(w, None, x), _local_kernel.pointwise_backward_input([(w, gy)]),
                _local_kernel.pointwise_backward_weight(gy, x, 8), out, attn,
                *_local_kernel.attention_backward(attn, valid, x, gy, 3, True, True)]

    one, two = at_one_and_two_threads(kernels)
    assert all(torch.equal(a, b) for a, b in zip(one, two))

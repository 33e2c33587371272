"""LocalAttention (StRA Eq. 2) and its fast weighting kernel, checked against slow references.

The references are written from the formulas (docs/stra.md) with explicit loops over output
pixels and window offsets (tests/layers/paper_reference.py); they share nothing with the code
under test except the module's parameters.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

import paper_reference
from strabench.errors import ShapeError
from strabench.layers._local_ops import (
    LOCAL_WEIGHTED_SUM_OP_NAME,
    gather_neighbours,
    local_attention_macs,
    local_weighted_sum,
    local_weighted_sum_jit_macs,
    unfold_weighted_sum,
)
from strabench.layers.local_attention import LocalAttention

TOL = {"atol": 1e-5, "rtol": 1e-5}


# ----------------------------------------------------------------------------------------------
# slow references


def reference_block(m: LocalAttention, x: Tensor) -> tuple[Tensor, Tensor]:
    """(output, attention) of ``m`` from its parameters, pixel by pixel (Eq. 2; the branch and its
    BatchNorms written out in paper_reference, in ``m``'s train/eval mode)."""
    return paper_reference.local_attention(m, x, training=m.training)


def reference_unfold(attn: Tensor, value: Tensor, k: int, s: int) -> Tensor:
    """The unfold formulation, written here independently (for shapes too big for loops)."""
    b, c, _, _ = value.shape
    g, kk, ho, wo = attn.shape[1:]
    cols = F.unfold(value, k, padding=k // 2, stride=s).reshape(b, g, c // g, kk, ho, wo)
    return torch.einsum("bgckij,bgkij->bgcij", cols, attn).reshape(b, c, ho, wo)


def _randomise_bn(m: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine params and running stats, so eval mode is not an identity."""
    gen = torch.Generator().manual_seed(seed)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.weight.data = 0.5 + torch.rand(n, generator=gen)
            bn.bias.data = 0.3 * torch.randn(n, generator=gen)
            bn.running_mean = 0.1 * torch.randn(n, generator=gen)
            bn.running_var = 0.5 + torch.rand(n, generator=gen)


def _make(c: int = 16, seed: int = 0, **kw) -> LocalAttention:
    torch.manual_seed(seed)
    m = LocalAttention(c, **kw)
    _randomise_bn(m, seed)
    return m


# ----------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("border", ["zero", "mask"])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [4, 8])
@pytest.mark.parametrize("channels", [16, 64])
def test_output_and_attention_shapes(channels: int, groups: int, stride: int, kernel_size: int, border: str) -> None:
    m = _make(channels, groups=groups, kernel_size=kernel_size, stride=stride, border=border)
    x = torch.randn(2, channels, 7, 5)
    ho, wo = paper_reference.out_size(7, kernel_size, stride), paper_reference.out_size(5, kernel_size, stride)
    conv = nn.Conv2d(channels, channels, kernel_size, stride=stride, padding=kernel_size // 2)
    assert conv(x).shape == (2, channels, ho, wo)
    assert m(x).shape == (2, channels, ho, wo)
    assert m.output_shape(7, 5) == (ho, wo)
    a = m.attention(x)
    assert a.shape == (2, groups, kernel_size**2, ho, wo)
    torch.testing.assert_close(a.sum(dim=2), torch.ones(2, groups, ho, wo))


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 3), (3, 1)])
@pytest.mark.parametrize("stride", [1, 2])
def test_wide_block_on_tiny_maps_matches_unfold(h: int, w: int, stride: int) -> None:
    m = _make(512, groups=8, stride=stride)
    ref = _make(512, groups=8, stride=stride, impl="unfold")
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 512, h, w)
    out = m(x)
    assert out.shape == (2, 512, paper_reference.out_size(h, 3, stride), paper_reference.out_size(w, 3, stride))
    torch.testing.assert_close(out, ref(x), **TOL)


# ----------------------------------------------------------------------------------------------
# fast == slow reference, outputs and gradients


def _grads(out: Tensor, proj: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad((out * proj).sum(), inputs))


# a conv bias right before a train-mode BatchNorm is cancelled by the batch mean: its gradient
# is exactly zero in maths (float noise in practice); it does act in eval mode
_BIASES_BEFORE_BN = {"branch.0.bias", "branch.3.bias"}


def _assert_grads_close(got: list[Tensor], want: list[Tensor], names: list[str], tol: float) -> None:
    """Elementwise within ``tol`` of the gradient's own scale (parameter grads reach ~50 here).

    Gradients that are zero in maths (``_BIASES_BEFORE_BN`` in train mode) are float noise on
    both sides; they get the scale of the other parameters' gradients.
    """
    top = max(w.abs().max().item() for w in want)
    for name, g, w in zip(names, got, want):
        scale = max(1.0, w.abs().max().item() if w.abs().max() > 1e-3 else top)
        torch.testing.assert_close(g, w, atol=tol * scale, rtol=tol, msg=lambda m, n=name: f"{n}: {m}")


IMPLS = {torch.float32: ("auto", "shifted", "unfold"), torch.float64: ("auto", "shifted")}


@pytest.mark.parametrize("dtype", list(IMPLS))
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("border", ["zero", "mask"])
def test_block_matches_pixel_loop_reference(border: str, stride: int, kernel_size: int, dtype: torch.dtype) -> None:
    """Every implementation against the float64 pixel loops, run once for the parameters and
    input the implementations share (the loops are most of the test's time)."""
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    shared: tuple[dict[str, Tensor], Tensor, list[Tensor]] | None = None
    for impl in IMPLS[dtype]:
        m = _make(16, groups=4, kernel_size=kernel_size, stride=stride, border=border, impl=impl).to(dtype)
        x = torch.randn(2, 16, 5, 7, dtype=dtype, requires_grad=True)
        names = ["input", *(n for n, _ in m.named_parameters())]
        params = [x, *m.parameters()]
        out = m(x)
        proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        if shared is None or not _same(shared[0], state) or not torch.equal(shared[1], x.detach()):
            # the reference always runs in float64 (a copy of the module's parameters): float32
            # rounding of a hand-written BatchNorm would otherwise be compared with torch's
            m64, x64 = copy.deepcopy(m).double(), x.detach().double().requires_grad_()
            ref_out, ref_attn = reference_block(m64, x64)
            want = [ref_out.detach(), ref_attn.detach(), *_grads(ref_out, proj.double(), [x64, *m64.parameters()])]
            shared = (state, x.detach().clone(), want)
        ref_out, ref_attn, *want_grads = shared[2]
        torch.testing.assert_close(out, ref_out.to(dtype), atol=tol, rtol=tol, msg=lambda msg, i=impl: f"{i}: {msg}")
        torch.testing.assert_close(m.attention(x), ref_attn.to(dtype), atol=tol, rtol=tol, msg=lambda msg, i=impl: f"{i}: {msg}")
        # float32 gradients against exact (float64) ones: a train-mode BN backward in float32 is
        # off by ~5e-5 of the gradient's scale, so 1e-4 there; float64 stays at 1e-10
        want = [g.to(dtype) for g in want_grads]
        _assert_grads_close(_grads(out, proj, params), want, [f"{impl}: {n}" for n in names],
                            tol if dtype == torch.float64 else 1e-4)


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stride", [1, 2])
def test_block_matches_pixel_loop_reference_in_eval_mode(stride: int) -> None:
    """Eval mode uses running statistics, and the biases before BN get real gradients."""
    m = _make(16, groups=4, stride=stride).eval()
    x = torch.randn(2, 16, 5, 7, requires_grad=True)
    names = ["input", *(n for n, _ in m.named_parameters())]
    params = [x, *m.parameters()]
    out = m(x)
    m64, x64 = copy.deepcopy(m).double(), x.detach().double().requires_grad_()
    ref_out, _ = reference_block(m64, x64)
    torch.testing.assert_close(out, ref_out.float(), **TOL)
    proj = torch.randn_like(out)
    want = [g.float() for g in _grads(ref_out, proj.double(), [x64, *m64.parameters()])]
    assert all(w.abs().max() > 1e-3 for w in want)
    _assert_grads_close(_grads(out, proj, params), want, names, 1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_channels_last_input_matches_and_keeps_format(stride: int) -> None:
    m = _make(16, groups=4, stride=stride)
    x = torch.randn(2, 16, 6, 5)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    xn = x.clone().requires_grad_()
    m_cl = _make(16, groups=4, stride=stride).to(memory_format=torch.channels_last)
    m_cl.load_state_dict(m.state_dict())
    out_n, out_c = m(xn), m_cl(xc)
    assert out_c.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_c, out_n, **TOL)
    proj = torch.randn_like(out_n)
    (gn,) = _grads(out_n, proj, [xn])
    (gc,) = _grads(out_c, proj, [xc])
    torch.testing.assert_close(gc, gn, **TOL)


@pytest.mark.parametrize("kernel", ["auto", "shifted"])  # auto: the fused kernel at stride 1
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel_size", "stride", "h", "w"), [(3, 1, 4, 5), (3, 2, 5, 4), (5, 1, 3, 4), (5, 2, 5, 5), (3, 3, 4, 2)])
def test_op_gradcheck_float64(kernel_size: int, stride: int, h: int, w: int, channels_last: bool, kernel: str) -> None:
    ho, wo = paper_reference.out_size(h, kernel_size, stride), paper_reference.out_size(w, kernel_size, stride)
    attn = torch.rand(2, 2, kernel_size**2, ho, wo, dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 4, h, w, dtype=torch.float64)
    if channels_last:
        value = value.contiguous(memory_format=torch.channels_last)
    value.requires_grad_()
    fast_mode = kernel_size > 3  # full Jacobians for K=3; random projections keep K=5 quick
    assert torch.autograd.gradcheck(
        lambda a, v: local_weighted_sum(a, v, kernel_size, stride, kernel), (attn, value), fast_mode=fast_mode
    )


@pytest.mark.parametrize("kernel", ["auto", "shifted"])
@pytest.mark.parametrize(("kernel_size", "stride"), [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_op_matches_references(kernel_size: int, stride: int, kernel: str) -> None:
    torch.manual_seed(1)
    h, w = 5, 6
    ho, wo = paper_reference.out_size(h, kernel_size, stride), paper_reference.out_size(w, kernel_size, stride)
    attn = torch.randn(2, 4, kernel_size**2, ho, wo, requires_grad=True)
    value = torch.randn(2, 32, h, w, requires_grad=True)
    fast = local_weighted_sum(attn, value, kernel_size, stride, kernel)
    loops = paper_reference.weighted_sum_loops(attn, value, kernel_size, stride)
    torch.testing.assert_close(fast, loops, **TOL)
    torch.testing.assert_close(fast, reference_unfold(attn, value, kernel_size, stride), **TOL)
    torch.testing.assert_close(unfold_weighted_sum(attn, value, kernel_size, stride), loops, **TOL)
    proj = torch.randn_like(fast)
    for got, want in zip(_grads(fast, proj, [attn, value]), _grads(loops, proj, [attn, value])):
        torch.testing.assert_close(got, want, **TOL)


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("kernel", ["auto", "shifted"])
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_op_never_materialises_the_unfolded_tensor(stride: int, kernel: str) -> None:
    attn = torch.rand(2, 4, 9, paper_reference.out_size(8, 3, stride), paper_reference.out_size(8, 3, stride), requires_grad=True)
    value = torch.randn(2, 64, 8, 8, requires_grad=True)
    with _LargestOutput() as fast:
        local_weighted_sum(attn, value, 3, stride, kernel).sum().backward()
    with _LargestOutput() as slow:
        unfold_weighted_sum(attn, value, 3, stride).sum().backward()
    assert fast.largest <= value.numel()
    assert slow.largest >= 9 * value.numel() // stride**2  # the check can see the big buffer


def test_gather_neighbours_matches_loops() -> None:
    t = torch.randn(2, 3, 4, 5)
    for k, s, fill in [(3, 1, 0.0), (3, 2, -torch.inf), (5, 1, 7.0)]:
        torch.testing.assert_close(gather_neighbours(t, k, s, fill), paper_reference.gather_neighbours_loops(t, k, s, fill))


# ----------------------------------------------------------------------------------------------
# training / eval behaviour


@pytest.mark.parametrize("stride", [1, 2])
def test_gradients_reach_every_parameter_in_train_mode(stride: int) -> None:
    m = _make(16, groups=4, stride=stride).train()
    x = torch.randn(2, 16, 5, 6)
    out = m(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        size = p.grad.abs().max().item()
        if name in _BIASES_BEFORE_BN:
            assert size < 1e-3, name
        else:
            assert size > 1e-3, name


def test_biases_before_batch_norm_get_gradients_in_eval_mode() -> None:
    m = _make(16, groups=4).eval()
    out = m(torch.randn(2, 16, 5, 6))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-3, name


def test_eval_mode_is_deterministic_and_leaves_running_stats() -> None:
    m = _make(16, groups=4).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        a, b = m(x), m(x)
        single = m(x[:1])
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a[:1], **TOL)  # no batch statistics in eval
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_train_mode_updates_batch_norm_statistics() -> None:
    m = _make(16, groups=4).train()
    before = m.branch[1].running_mean.clone()
    m(torch.randn(2, 16, 5, 6))
    assert not torch.equal(m.branch[1].running_mean, before)


# ----------------------------------------------------------------------------------------------
# semantics


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_groups_are_independent(mode: str) -> None:
    """Perturbing group h's channels moves only group h's omega/nu (the released code leaks)."""
    g, c = 4, 16
    m = _make(c, groups=g)
    m.train(mode == "train")
    x = torch.randn(2, c, 5, 6)
    cg = c // g
    for h in range(g):
        y = x.clone()
        y[:, h * cg : (h + 1) * cg] += torch.randn(2, cg, 5, 6)
        with torch.no_grad():
            ax, ay = m.attention(x), m.attention(y)
            ox, oy = m(x), m(y)
        changed = [bool((ax[:, gi] - ay[:, gi]).abs().max() > 1e-6) for gi in range(g)]
        assert changed == [gi == h for gi in range(g)]
        out_changed = [bool((ox[:, gi * cg : (gi + 1) * cg] - oy[:, gi * cg : (gi + 1) * cg]).abs().max() > 1e-6) for gi in range(g)]
        assert out_changed == [gi == h for gi in range(g)]


def _in_image(k: int, s: int, h: int, w: int) -> Tensor:
    ho, wo = paper_reference.out_size(h, k, s), paper_reference.out_size(w, k, s)
    valid = torch.zeros(k * k, ho, wo, dtype=torch.bool)
    for n, (dy, dx) in enumerate(paper_reference.window(k)):
        for i, j in itertools.product(range(ho), range(wo)):
            valid[n, i, j] = 0 <= i * s + dy < h and 0 <= j * s + dx < w
    return valid


@pytest.mark.parametrize(("kernel_size", "stride"), [(3, 1), (5, 2)])
def test_border_semantics(kernel_size: int, stride: int) -> None:
    x = torch.randn(2, 16, 5, 4)
    valid = _in_image(kernel_size, stride, 5, 4)
    assert not valid.all()  # the test has borders to look at
    masked = _make(16, groups=4, kernel_size=kernel_size, stride=stride, border="mask").attention(x)
    assert torch.all(masked[:, :, ~valid] == 0)
    assert torch.all(masked[:, :, valid] > 0)
    torch.testing.assert_close(masked.sum(dim=2), torch.ones_like(masked[:, :, 0]))
    zero = _make(16, groups=4, kernel_size=kernel_size, stride=stride, border="zero").attention(x)
    assert torch.all(zero[:, :, ~valid] > 0)
    torch.testing.assert_close(zero.sum(dim=2), torch.ones_like(zero[:, :, 0]))


def test_zero_border_gives_outside_neighbours_logit_omega() -> None:
    """With "zero", an outside neighbour's logit is omega alone: check at the corner pixel."""
    m = _make(8, groups=2).eval()
    x = torch.randn(1, 8, 3, 3)
    with torch.no_grad():
        logits = m.branch(x)
        a = m.attention(x)
    kk = 9
    for g in range(2):
        omega = logits[0, g * (kk + 1) : g * (kk + 1) + kk, 0, 0]
        nu = logits[0, g * (kk + 1) + kk]
        want = torch.stack([omega[n] + (nu[dy, dx] if dy >= 0 and dx >= 0 else 0.0) for n, (dy, dx) in enumerate(paper_reference.window(3))])
        torch.testing.assert_close(a[0, g, :, 0, 0], torch.softmax(want, dim=0), **TOL)


def test_parameter_count_at_paper_width() -> None:
    c, g, k = 512, 8, 3
    hidden = 128  # C/4, already a multiple of G
    out = g * (k * k + 1)  # 80: per group 9 omegas + 1 nu
    value = c * (c // g)  # 512 * 64 = 32768
    conv1 = hidden * (c // g) + hidden  # 8192 weights + 128 bias
    bn1 = 2 * hidden
    conv2 = out * (hidden // g) + out  # 1280 weights + 80 bias
    bn2 = 2 * out
    expected = value + conv1 + bn1 + conv2 + bn2
    assert expected == 42864
    assert value == 32768
    m = LocalAttention(c, groups=g, kernel_size=k)
    assert sum(p.numel() for p in m.parameters()) == expected
    assert m.branch[0].out_channels == hidden


def test_hidden_width_rounds_up_to_groups() -> None:
    assert LocalAttention(24, groups=8).branch[0].out_channels == 8  # 24 // 4 = 6 -> 8
    assert LocalAttention(72, groups=4).branch[0].out_channels == 20  # 18 -> 20


# ----------------------------------------------------------------------------------------------
# validation


def test_invalid_construction_raises() -> None:
    with pytest.raises(ValueError, match="divisible"):
        LocalAttention(30, groups=8)
    with pytest.raises(ValueError, match="odd"):
        LocalAttention(16, groups=4, kernel_size=4)
    with pytest.raises(ValueError, match="stride"):
        LocalAttention(16, groups=4, stride=0)
    with pytest.raises(ValueError, match="border"):
        LocalAttention(16, groups=4, border="reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="impl"):
        LocalAttention(16, groups=4, impl="cuda")  # type: ignore[arg-type]


def test_wrong_input_shape_raises_shape_error() -> None:
    m = LocalAttention(16, groups=4)
    with pytest.raises(ShapeError, match="16"):
        m(torch.randn(2, 8, 5, 5))
    with pytest.raises(ShapeError):
        m(torch.randn(16, 5, 5))
    with pytest.raises(ShapeError):
        m.attention(torch.randn(2, 8, 5, 5))


def test_op_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        local_weighted_sum(torch.rand(1, 4, 9, 4, 4), torch.randn(1, 8, 5, 5), 3, 1)
    with pytest.raises(ValueError):
        local_weighted_sum(torch.rand(1, 3, 9, 5, 5), torch.randn(1, 8, 5, 5), 3, 1)


# ----------------------------------------------------------------------------------------------
# precision, tracing, counting


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_low_precision(dtype: torch.dtype) -> None:
    m = _make(16, groups=4)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    want = m(x)
    with torch.autocast("cpu", dtype=dtype):
        got = m(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    got.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_float64_module() -> None:
    m = _make(16, groups=4).double()
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    out = m(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference_block(m, x)[0])


def test_jit_trace_shows_named_op_and_counts_macs() -> None:
    """The op-per-pass weighting (stride 2, ``impl="shifted"``, where StRA's operators do not run)
    traces as one named node fvcore counts with its handle."""
    m = _make(16, groups=4, impl="shifted").eval()
    x = torch.randn(2, 16, 5, 6)
    traced = torch.jit.trace(m, (x,))
    torch.testing.assert_close(traced(x), m(x))
    nodes = [n for n in traced.inlined_graph.nodes() if n.kind() == "prim::PythonOp"]
    names = [f"{n.kind()}.{n.pyname()}" for n in nodes]
    assert names == [LOCAL_WEIGHTED_SUM_OP_NAME]
    assert local_weighted_sum_jit_macs(list(nodes[0].inputs()), list(nodes[0].outputs())) == 2 * 16 * 5 * 6 * 9


def test_fvcore_counts_the_weighting_with_the_handle() -> None:
    fvcore_nn = pytest.importorskip("fvcore.nn")
    m = _make(16, groups=4, stride=2).eval()
    x = torch.randn(1, 16, 5, 6)
    analysis = fvcore_nn.FlopCountAnalysis(m, (x,)).set_op_handle(LOCAL_WEIGHTED_SUM_OP_NAME, local_weighted_sum_jit_macs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    # fvcore reports operators without their "prim::"/"aten::" prefix
    assert by_op[LOCAL_WEIGHTED_SUM_OP_NAME.split("::", 1)[1]] == local_attention_macs(1, 16, 4, 3, 3, 3)


def test_local_attention_macs() -> None:
    assert local_attention_macs(32, 512, 8, 3, 16, 8) == 32 * 512 * 16 * 8 * 9

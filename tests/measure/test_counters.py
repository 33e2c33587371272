"""The fvcore and ptflops conventions: nothing uncounted, attention arithmetic counted by hand."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from strabench.counting import declared_counting
from strabench.layers._local_ops import LOCAL_WEIGHTED_SUM_OP_NAME
from strabench.layers.local_attention import LocalAttention
from strabench.layers.mode_attention import ModeAttention
from strabench.layers.non_local import NonLocal
from strabench.layers.kernels import use_kernels
from strabench.layers.sasa import SASA
from strabench.layers.se import SqueezeExcite
from strabench.measure import counters
from strabench.measure.flops import MacCount, count_macs, count_macs_paper
from strabench.registry import create_model, list_models, model_info

CONVENTIONS = ("paper", "fvcore", "ptflops")


def count_all(model: nn.Module, shape: tuple[int, int, int]) -> dict[str, MacCount]:
    return {conv: count_macs(model, shape, conv) for conv in CONVENTIONS}


@functools.lru_cache(maxsize=None)
def registry_counts(name: str) -> dict[str, MacCount]:
    return count_all(create_model(name), model_info(name).default_input)


def bias_adds(model: nn.Module, example: torch.Tensor) -> int:
    """One add per output element of every conv/linear with a bias (what ``paper`` adds to fvcore's conv count)."""
    skip = {id(m) for m in model.classifier.modules()} if hasattr(model, "classifier") else set()
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None and id(m) not in skip
    ]
    if handles:
        with torch.no_grad():
            model(example)
    for h in handles:
        h.remove()
    return total


def block_counts(block: nn.Module, shape: tuple[int, ...]) -> dict[str, MacCount]:
    block.eval()
    x = torch.zeros(shape)
    return {"paper": count_macs_paper(block, x), **{k: f(block, x) for k, f in counters.COUNTERS.items()}}


def own_macs(count: MacCount) -> int:
    """MACs of a lone block's own forward: its total minus its direct children's."""
    return count.total - sum(v for name, v in count.by_module.items() if "." not in name)


# --- every registered model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_registered_model_is_fully_counted(name, monkeypatch):
    """Both counters cost every op / module of the model; fvcore leans only on documented free ops.

    fvcore is traced once, with its default ignore list emptied: it then reports every op it has
    no handle for, ignored ones included. What it would report with the list in place (our
    ``uncounted``) is that minus the list; the rest must be the ops we document as free.
    """
    with warnings.catch_warnings():  # fvcore scripts a loss at import (a torch.jit FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import jit_analysis

    ignored_by_default = set(jit_analysis._IGNORED_OPS)
    assert set(counters.FVCORE_FREE_BY_DEFAULT) <= ignored_by_default
    shape = model_info(name).default_input
    model = create_model(name)
    paper, pt = count_macs(model, shape, "paper"), count_macs(model, shape, "ptflops")
    monkeypatch.setattr(jit_analysis, "_IGNORED_OPS", set())
    fv = count_macs(model, shape, "fvcore")
    assert sorted(set(fv.uncounted) - ignored_by_default) == [], f"fvcore cannot cost them in {name}"
    assert set(fv.uncounted) <= set(counters.FVCORE_FREE_BY_DEFAULT)
    assert pt.uncounted == [], f"ptflops has no hook for {pt.uncounted} in {name}"
    for count in (fv, pt):
        assert sum(v for k, v in count.by_module.items() if "." not in k) == count.total
        assert all(k.count(".") <= 1 and v > 0 for k, v in count.by_module.items())
    # fvcore counts all that paper counts except biases; ptflops counts all of it (biases too)
    assert fv.total >= paper.total - bias_adds(model.eval(), torch.zeros(1, *shape))
    assert pt.total >= paper.total


def test_resnet50_sanity_and_stra_is_cheaper():
    base, stra = registry_counts("resnet50"), registry_counts("resnet50_stra")
    assert base["fvcore"].uncounted == stra["fvcore"].uncounted == []  # unpatched fvcore, for the record
    # ResNet-50 has no conv/linear bias: fvcore adds BN, residual adds and pooling to paper's count
    assert base["fvcore"].total >= base["paper"].total
    # ptflops adds BN, ReLU and pooling: +0.60 % (4.0788 G vs 4.0543 G at 256x128)
    assert 0 < base["ptflops"].total / base["paper"].total - 1 < 0.02
    for conv in CONVENTIONS:
        assert stra[conv].total < base[conv].total, conv


# --- attention arithmetic, by hand --------------------------------------------------------------


def test_local_attention_counts_the_weighting():
    # C=64, G=8, K=3 on 8x8: value conv 64->64 (g8), branch conv 64->16 (g8, bias), conv 16->80 (g8, bias)
    counts = block_counts(LocalAttention(64, groups=8), (1, 64, 8, 8))
    px = 64
    convs = (64 * 8 + 16 * 8 + 80 * 2) * px
    biases = (16 + 80) * px
    bn, tanh = 2 * (16 + 80) * px, 16 * px
    weighting = 1 * 64 * px * 9  # B*C*H*W*K*K
    logits = 8 * 9 * px  # omega + nu, and its softmax
    assert counts["paper"].total == convs + biases
    assert counts["fvcore"].total >= convs + weighting
    assert counts["fvcore"].total - counts["paper"].total == -biases + bn + tanh + 2 * logits + weighting
    assert counts["ptflops"].total - counts["paper"].total == bn + tanh + 2 * logits + weighting


@pytest.mark.parametrize("interaction", [True, False])
def test_mode_attention_counts_einsums_and_gates(interaction):
    b, c, g, p = 1, 64, 8, 8 * 8
    counts = block_counts(ModeAttention(c, groups=g, interaction=interaction), (b, c, 8, 8))
    convs = (64 * 8 + 8 * 8) * p  # mask branch: 64->64 (g8), 64->8 (g8), no bias
    bn = 2 * (64 + 8 + 8 + (8 if interaction else 0)) * p
    tanh = 64 * p
    einsums = 2 * c * p  # z = M x, <z, x>
    pointwise = g * p + g * p + 2 * c * p  # mask softmax, sigmoid, y = x + r z
    if interaction:
        einsums += 2 * g * g * (c // g) + c * p  # Z Z^T, P Z (bmm), <z', y>
        pointwise += 4 * g * g + g * p + 2 * c * p  # norm, divide, scale, softmax; sigmoid; y + s z'
    assert counts["paper"].total == convs
    assert counts["fvcore"].total >= convs + einsums
    for conv in ("fvcore", "ptflops"):
        assert counts[conv].total - counts["paper"].total == bn + tanh + einsums + pointwise, conv


def test_sasa_counts_dense_attention():
    b, c, heads, k, n = 1, 64, 8, 3, 6 * 5
    counts = block_counts(SASA(c, heads=heads, kernel_size=k), (b, c, 6, 5))
    convs = 3 * c * (c // heads) * n  # q, k, v: grouped 1x1, no bias
    qk, av = b * c * n * n, b * c * n * n  # dense HW x HW per head
    relative = b * c * n * k  # each half of q against K row / K column embeddings
    pointwise = 3 * b * heads * n * n  # + rel_row, + rel_col, softmax
    assert counts["paper"].total == convs
    assert counts["fvcore"].total >= convs + qk + av
    for conv in ("fvcore", "ptflops"):
        assert counts[conv].total - counts["paper"].total == qk + av + relative + pointwise, conv


def test_non_local_counts_both_matmuls():
    b, c, h, w = 1, 32, 6, 5
    inner, n, keys = 16, h * w, 3 * 3  # phi and g max-pooled 2x2 (ceil): 3x3 keys
    counts = block_counts(NonLocal(c), (b, c, h, w))
    convs = (3 * inner * c + c * inner) * n
    biases = (3 * inner + c) * n
    bn = 2 * c * n
    theta_phi, attn_g = b * n * inner * keys, b * n * keys * inner
    pointwise = b * n * keys + b * c * n  # softmax, residual add
    pool_inputs = 2 * inner * n  # ptflops costs max pooling (phi and g) by input element; fvcore: 0
    assert counts["paper"].total == convs + biases
    assert counts["fvcore"].total >= convs + theta_phi + attn_g
    assert counts["fvcore"].total - counts["paper"].total == -biases + bn + theta_phi + attn_g + pointwise
    assert counts["ptflops"].total - counts["paper"].total == bn + pool_inputs + theta_phi + attn_g + pointwise


BLOCKS = {
    "local": lambda: (LocalAttention(64), (1, 64, 8, 8)),
    "local_stride2_mask": lambda: (LocalAttention(64, stride=2, border="mask"), (1, 64, 7, 6)),
    "local_k5_g4": lambda: (LocalAttention(32, groups=4, kernel_size=5), (2, 32, 5, 6)),
    "mode": lambda: (ModeAttention(64), (2, 64, 5, 3)),
    "mode_no_interaction": lambda: (ModeAttention(32, groups=4, interaction=False), (1, 32, 4, 4)),
    "sasa": lambda: (SASA(32, heads=4, kernel_size=5), (1, 32, 6, 5)),
    "sasa_stride2": lambda: (SASA(64, kernel_size=3, stride=2), (1, 64, 6, 4)),
    "non_local": lambda: (NonLocal(32), (2, 32, 5, 5)),
    "non_local_no_subsample": lambda: (NonLocal(16, subsample=False), (1, 16, 4, 3)),
    "se": lambda: (SqueezeExcite(64), (1, 64, 5, 5)),
}


@pytest.mark.parametrize("case", list(BLOCKS))
def test_ptflops_block_formulas_equal_fvcore_per_op_count(case):
    """The hooks' formulas and fvcore's per-op count of the same forward agree (so neither drifts)."""
    block, shape = BLOCKS[case]()
    counts = block_counts(block, shape)
    assert counts["fvcore"].uncounted == counts["ptflops"].uncounted == []
    assert own_macs(counts["fvcore"]) == own_macs(counts["ptflops"]) > 0


def test_unfold_local_attention_counts_mul_and_sum_separately():
    fast = block_counts(LocalAttention(64), (1, 64, 8, 8))
    slow = block_counts(LocalAttention(64, impl="unfold"), (1, 64, 8, 8))
    assert slow["fvcore"].total - fast["fvcore"].total == 64 * 64 * 9  # documented: 2 per multiply-add
    assert slow["ptflops"].total == fast["ptflops"].total


# --- nothing is dropped silently ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key,make,shape",
    [
        (LOCAL_WEIGHTED_SUM_OP_NAME, lambda: LocalAttention(64, stride=2), (1, 64, 8, 8)),
        ("strabench::local_attention", lambda: LocalAttention(64), (1, 64, 8, 8)),
        ("strabench::grouped_pointwise", lambda: LocalAttention(64), (1, 64, 8, 8)),
        ("strabench::grouped_pointwise", lambda: ModeAttention(64), (1, 64, 4, 4)),
        ("aten::softmax", lambda: ModeAttention(64), (1, 64, 4, 4)),
        ("aten::linalg_vector_norm", lambda: ModeAttention(64), (1, 64, 4, 4)),
        ("aten::meshgrid", lambda: use_kernels(SASA(32, heads=4, kernel_size=3), "stock"), (1, 32, 4, 4)),
        ("prim::PythonOp.SASAttention", lambda: SASA(32, heads=4, kernel_size=3), (1, 32, 4, 4)),
        ("aten::hardtanh_", lambda: nn.ReLU6(inplace=True), (1, 8, 2, 2)),
    ],
)
def test_fvcore_without_a_handle_reports_the_op(key, make, shape, monkeypatch):
    block, x = make().eval(), torch.zeros(shape)
    assert counters.count_macs_fvcore(block, x).uncounted == []
    declared = declared_counting(type(block))
    if declared is not None and key in declared.fvcore:  # a handle the block declares itself
        monkeypatch.setattr(type(block), "__strabench_counting__", dataclasses.replace(declared, fvcore={}))
    else:
        monkeypatch.delitem(counters.FVCORE_HANDLES, key)
    assert counters.count_macs_fvcore(block, x).uncounted == [key]


@pytest.mark.parametrize(
    "cls,make", [(ModeAttention, lambda: ModeAttention(64)), (nn.Tanh, lambda: LocalAttention(64))]
)
def test_ptflops_without_a_hook_reports_the_module(cls, make, monkeypatch):
    block, x = make().eval(), torch.zeros(1, 64, 4, 4)
    assert counters.count_macs_ptflops(block, x).uncounted == []
    if cls in counters.PTFLOPS_TORCH_MACS:
        monkeypatch.delitem(counters.PTFLOPS_TORCH_MACS, cls)
    else:  # our block declares its hook next to its class
        monkeypatch.setattr(cls, "__strabench_counting__", None)
    assert counters.count_macs_ptflops(block, x).uncounted == [f"{cls.__module__}.{cls.__qualname__}"]


def test_ptflops_reports_an_unknown_module_with_arithmetic():
    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    count = counters.count_macs_ptflops(nn.Sequential(nn.Conv2d(3, 4, 1), Scale()).eval(), torch.zeros(1, 3, 2, 2))
    assert count.uncounted == [f"{Scale.__module__}.{Scale.__qualname__}"]


def _state(model: nn.Module) -> list:
    return [
        (name, m.training, sorted(vars(m)), len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    ]


@pytest.mark.parametrize("training", [False, True])
def test_counters_leave_no_trace_and_are_deterministic(training):
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), ModeAttention(16, groups=4), nn.ReLU()).train(training)
    before = _state(model)
    functions = (F.softmax, F.relu, torch.matmul, torch.bmm, torch.Tensor.mul)
    x = torch.zeros(1, 16, 5, 4)
    first = counters.count_macs_ptflops(model, x)
    assert _state(model) == before
    assert (F.softmax, F.relu, torch.matmul, torch.bmm, torch.Tensor.mul) == functions
    assert counters.count_macs_ptflops(model, x) == first
    model.eval()  # fvcore traces the forward as it is (count_macs passes eval models)
    before = _state(model)
    assert counters.count_macs_fvcore(model, x) == counters.count_macs_fvcore(model, x)
    assert _state(model) == before


def test_fvcore_and_ptflops_print_nothing(capfd):
    counters.count_macs_fvcore(ModeAttention(16, groups=4).eval(), torch.zeros(1, 16, 3, 3))
    counters.count_macs_ptflops(ModeAttention(16, groups=4).eval(), torch.zeros(1, 16, 3, 3))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_einsum_count_is_exact():
    # (2x3)(3x4)(4x5): contracting the first pair first costs 2*3*4 + 2*4*5 = 64 multiply-adds
    assert counters._einsum_macs("ij,jk,kl->il", [[2, 3], [3, 4], [4, 5]]) == 64
    assert counters._einsum_macs("bgcp,gck->bgpk", [[1, 8, 4, 24], [8, 4, 3]]) == 8 * 4 * 24 * 3
    assert counters._einsum_macs("bij,bjk", [[2, 3, 4], [2, 4, 5]]) == 2 * 3 * 4 * 5

"""The ``strabench::`` operators: registered the way torch checks (``torch.library.opcheck``:
schema, fake tensors, autograd registration, AOT dispatch), equal to their decompositions, opaque
to ``torch.compile``, and replaced by their decompositions inside ``ops.decomposed()``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from strabench.layers import _local_kernel, ops
from strabench.layers._window import flat_valid

pytestmark = pytest.mark.requires_kernels


def _t(*shape: int, dtype: torch.dtype, grad: bool = False, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(grad)


def _norm(c: int, dtype: torch.dtype, seed: int) -> list:
    """(weight, bias, running mean, running var, eps) of an eval-mode BN."""
    return [_t(c, dtype=dtype, seed=seed), _t(c, dtype=dtype, seed=seed + 1), _t(c, dtype=dtype, seed=seed + 2),
            _t(c, dtype=dtype, seed=seed + 3).abs() + 0.5, 1e-5]


def _masked(b: int, g: int, k: int, h: int, w: int, dtype: torch.dtype, grad: bool) -> Tensor:
    attn = _t(b, g, k * k, h * w, dtype=dtype).softmax(2) * flat_valid(k, h, w, torch.empty(0, dtype=dtype))
    return attn.detach().requires_grad_(grad)


def _cases(dtype: torch.dtype) -> dict[str, tuple]:
    b, c, g, k, h, w = 2, 16, 4, 3, 5, 6
    logits = _t(b, g * (k * k + 1), h, w, dtype=dtype, grad=True)
    value = _t(b, c, h, w, dtype=dtype, grad=True)
    _out, attn = ops.local_attention(logits.detach(), value.detach(), k, False)
    masked = _masked(b, g, k, h, w, dtype, True)
    conv = lambda cout, cin, bias, seed: [_t(cout, cin // g, 1, 1, dtype=dtype, seed=seed),  # noqa: E731
                                          _t(cout, dtype=dtype, seed=seed + 1) if bias else None]
    hidden = 8
    return {
        "grouped_pointwise": (ops.grouped_pointwise, (_t(b, c, h, w, dtype=dtype, grad=True),
                                                      _t(8, c // g, 1, 1, dtype=dtype, grad=True),
                                                      _t(8, dtype=dtype, grad=True), g)),
        "grouped_pointwise no bias": (ops.grouped_pointwise, (_t(b, c, h, w, dtype=dtype, grad=True),
                                                              _t(12, c // g, 1, 1, dtype=dtype, grad=True), None, g)),
        "grouped_pointwise_backward_input": (ops.grouped_pointwise_backward_input,
                                             (_t(b, 8, h, w, dtype=dtype), _t(8, c // g, 1, 1, dtype=dtype), g)),
        "grouped_pointwise_backward_weight": (ops.grouped_pointwise_backward_weight,
                                              (_t(b, 8, h, w, dtype=dtype), _t(b, c, h, w, dtype=dtype), g)),
        "local_attention zero": (ops.local_attention, (logits, value, k, False)),
        "local_attention mask": (ops.local_attention, (logits, value, k, True)),
        "local_attention_backward": (ops.local_attention_backward,
                                     (attn, value.detach(), _t(b, c, h, w, dtype=dtype, seed=5), k, True, True)),
        "local_attention_backward value only": (ops.local_attention_backward,
                                                (attn, value.detach(), _t(b, c, h, w, dtype=dtype, seed=5), k, False,
                                                 True)),
        "local_weighted_sum": (ops.local_weighted_sum, (masked, value, k)),
        "local_weighted_sum channels_last": (
            ops.local_weighted_sum,
            (masked, value.detach().contiguous(memory_format=torch.channels_last).requires_grad_(), k)),
        "local_weighted_sum_backward": (ops.local_weighted_sum_backward,
                                        (masked.detach(), value.detach(), _t(b, c, h, w, dtype=dtype, seed=6), k, True,
                                         True)),
        "local_attention_infer": (ops.local_attention_infer, (
            _t(b, c, h, w, dtype=dtype), k, False, g, *conv(c, c, False, 10), *conv(hidden, c, True, 20),
            *conv(g * (k * k + 1), hidden, True, 30), *_norm(hidden, dtype, 40), *_norm(g * (k * k + 1), dtype, 50))),
        "mode_attention_infer": (ops.mode_attention_infer, (
            _t(b, c, h, w, dtype=dtype), g, True, *conv(hidden, c, False, 60), *conv(g, hidden, False, 70),
            *_norm(hidden, dtype, 80), *_norm(g, dtype, 90), *_norm(g, dtype, 100), *_norm(g, dtype, 110))),
        "mode_attention_infer no interaction": (ops.mode_attention_infer, (
            _t(b, c, h, w, dtype=dtype), g, False, *conv(hidden, c, False, 60), *conv(g, hidden, False, 70),
            *_norm(hidden, dtype, 80), *_norm(g, dtype, 90), *_norm(g, dtype, 100), None, None, None, None, 0.0)),
    }


CASE_NAMES = list(_cases(torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_opcheck(case: str, dtype: torch.dtype) -> None:
    op, args = _cases(dtype)[case]
    torch.library.opcheck(op, args)


def test_every_operator_is_opchecked() -> None:
    checked = {_cases(torch.float32)[name][0]._qualname for name in CASE_NAMES}
    assert checked == set(ops.OPERATORS)


_FORWARD_CASES = [name for name in CASE_NAMES if "backward" not in name]


@pytest.mark.parametrize("case", _FORWARD_CASES)
def test_the_c_kernel_and_the_decomposition_agree(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """float64: the operator with its C kernel, the operator without (its decomposition), and the
    decomposition called directly inside ``decomposed()`` give the same outputs and gradients."""
    op, args = _cases(torch.float64)[case]

    def run() -> list[Tensor]:
        outs = op(*args)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        if leaves:
            outs += list(torch.autograd.grad(outs[0], leaves, torch.ones_like(outs[0])))
        return [o.detach() for o in outs]

    fused = run()
    with ops.decomposed():
        decomposed = run()
    monkeypatch.setattr(_local_kernel, "available", lambda: False)
    fallback = run()
    for i, (a, b, c) in enumerate(zip(fused, decomposed, fallback)):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11, msg=lambda m, i=i: f"output {i}: {m}")
        torch.testing.assert_close(a, c, atol=1e-11, rtol=1e-11, msg=lambda m, i=i: f"output {i}: {m}")
        assert a.stride() == c.stride(), f"output {i}: the layout depends on the path"


def test_a_backward_operator_refuses_what_its_kernel_does_not_take() -> None:
    op, args = _cases(torch.float64)["local_attention_backward"]
    with pytest.raises(RuntimeError, match="runs its C kernel only"):
        op(args[0].float(), *args[1:])


def test_torch_compile_sees_each_operator_as_one_opaque_node() -> None:
    from strabench.layers.local_attention import LocalAttention

    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs):  # noqa: ANN001, ANN202
        from torch._dynamo.backends.common import aot_autograd

        def keep(g: torch.fx.GraphModule, _inputs):  # noqa: ANN001, ANN202
            graphs.append(g)
            return g

        return aot_autograd(fw_compiler=keep, bw_compiler=keep)(gm, example_inputs)

    torch.manual_seed(0)
    m = LocalAttention(16, groups=4)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    compiled = torch.compile(m, backend=backend, fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, m(x))
    targets = [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]
    for op in ("grouped_pointwise", "local_attention", "local_attention_backward", "grouped_pointwise_backward_input",
               "grouped_pointwise_backward_weight"):
        assert f"strabench.{op}.default" in targets, op
    assert not any("softmax" in t for t in targets)  # not traced through: one node each


def test_fvcore_handles_count_what_the_equations_say() -> None:
    from fvcore.nn import FlopCountAnalysis

    from strabench.layers.local_attention import LocalAttention

    m = LocalAttention(16, groups=4).eval()
    x = torch.randn(2, 16, 5, 6)
    analysis = FlopCountAnalysis(m, (x,)).set_op_handle(**ops.FVCORE_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    px = 2 * 5 * 6
    # value 16 -> 16, branch 16 -> 4 (16 / 4 rounded up to the 4 groups), 4 -> 4 * 10; per group 4, 4, 1 inputs
    assert by_op["grouped_pointwise"] == (16 * 4 + 4 * 4 + 40 * 1) * px
    assert by_op["local_attention"] == 2 * 4 * 9 * px + 16 * 9 * px  # omega + nu, softmax; weighting

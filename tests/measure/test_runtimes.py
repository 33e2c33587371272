"""ONNX export and torch.compile give the eager outputs: every registered model through
onnxruntime, the StRA blocks against the float64 pixel-loop reference, compiled blocks forward
and backward."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers"))
import paper_reference  # noqa: E402
from strabench.errors import ConfigError, ExportError  # noqa: E402
from strabench.layers.kernels import fuse_for_inference  # noqa: E402
from strabench.layers.local_attention import LocalAttention  # noqa: E402
from strabench.layers.stra import StRA  # noqa: E402
from strabench.measure import runtimes  # noqa: E402
from strabench.registry import list_models  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SMALL = (64, 32)  # every registered model takes it (multiples of its output stride)
STANDARD_DOMAINS = {"", "ai.onnx"}


def _session(model: nn.Module, x: torch.Tensor):
    data = runtimes.export_onnx(model, x, name=type(model).__name__)
    return data, runtimes.onnx_session(data, device="cpu", threads=1)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_and_matches_eager_in_onnxruntime(name: str, tmp_path: Path) -> None:
    result = runtimes.export_model(name, tmp_path / f"{name}.onnx", input_size=SMALL, batch=2, threads=1)
    graph = onnx.load(tmp_path / f"{name}.onnx").graph
    assert {node.domain for node in graph.node} <= STANDARD_DOMAINS  # no custom / Python op left
    assert result["max_abs_diff"] <= runtimes.ONNX_ATOL + runtimes.ONNX_RTOL  # outputs are O(1) or less
    assert result["checked_batches"] == [2]


def _local_attention(stride: int, border: str) -> LocalAttention:
    torch.manual_seed(stride)
    m = LocalAttention(16, groups=4, stride=stride, border=border).eval()
    paper_reference.set_random_batch_norm(m)
    return m


@pytest.mark.parametrize("border", ["zero", "mask"])
@pytest.mark.parametrize("stride", [1, 2])
def test_exported_local_attention_matches_the_pixel_loop_reference(stride: int, border: str) -> None:
    m = _local_attention(stride, border)
    x = torch.randn(2, 16, 6, 5)
    data, session = _session(m, x)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert {"Pad", "Slice", "Mul", "Add"} <= ops and not ops & {"PythonOp", "Unfold"}
    (got,) = session.run(None, {"input": x.numpy()})
    want, _ = paper_reference.local_attention(copy.deepcopy(m).double(), x.double(), training=False)
    torch.testing.assert_close(torch.from_numpy(got), want.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_exported_stra_block_matches_eager(stride: int) -> None:
    torch.manual_seed(0)
    block = StRA(32, groups=8, stride=stride).eval()
    paper_reference.set_random_batch_norm(block)
    x = torch.randn(2, 32, 8, 6)
    _, session = _session(block, x)
    assert runtimes.check_outputs(session, block, x, name="StRA") <= 1e-5


def test_the_check_fails_when_the_exported_model_differs(tmp_path: Path) -> None:
    m = _local_attention(1, "zero")
    x = torch.randn(2, 16, 6, 5)
    _, session = _session(m, x)
    other = _local_attention(1, "mask")  # same weights, other border: differs at the image border
    other.load_state_dict(m.state_dict())
    with pytest.raises(ExportError, match="differs from eager PyTorch by"):
        runtimes.check_outputs(session, other, x, name="LocalAttention")


def test_dynamic_batch_is_checked_at_two_batches(tmp_path: Path) -> None:
    result = runtimes.export_model("fer_resnet_stra", tmp_path / "m.onnx", batch=2, dynamic_batch=True, threads=1)
    assert result["batch"] == "dynamic" and result["checked_batches"] == [2, 3]
    (shape,) = [i.type.tensor_type.shape for i in onnx.load(tmp_path / "m.onnx").graph.input]
    assert shape.dim[0].dim_param == "batch"


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"needs the onnx extra: pip install 'strabench\[onnx\]'"):
        runtimes.export_model("fer_resnet", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"runtime": "tensorrt"}, "--runtime must be one of"),
        ({"runtime": "onnxruntime", "mode": "train"}, "inference only"),
        ({"runtime": "onnxruntime", "amp": "bf16"}, "--amp bf16 means nothing"),
        ({"runtime": "onnxruntime", "channels_last": True}, "--channels-last means nothing"),
    ],
)
def test_runtime_combinations_that_mean_nothing_are_refused(kwargs: dict, needle: str) -> None:
    from strabench.measure.latency import BenchSpec

    with pytest.raises(ConfigError, match=needle):
        BenchSpec(**kwargs)


# --- torch.compile ---------------------------------------------------------------------------


def _compiled_matches(module: nn.Module, x: torch.Tensor, *, backward: bool, backend: str = "inductor") -> None:
    """Forward (and input + parameter gradients) of torch.compile(module) equal eager's.

    Backward runs in float64: a conv bias right before a train-mode BatchNorm has a gradient
    that is zero in maths, and float32 noise there would need a tolerance that hides errors.
    ``backend="aot_eager"`` traces the module as inductor does (dynamo's graph, the operators'
    fake implementations, AOT autograd's backward graph) and runs that graph in eager ops,
    without generating and compiling C++: what our code contributes to a compiled run, checked
    in a fraction of the time; the StRA block and `bench --runtime compile` go through inductor.
    """
    eager, compiled_module = module, copy.deepcopy(module)
    compiled = torch.compile(compiled_module, backend=backend)
    xe, xc = x.clone().requires_grad_(backward), x.clone().requires_grad_(backward)
    out_e, out_c = eager(xe), compiled(xc)
    tol = 1e-10 if x.dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out_c, out_e, atol=tol, rtol=tol)
    if not backward:
        return
    proj = torch.randn_like(out_e)
    grads_e = torch.autograd.grad((out_e * proj).sum(), [xe, *eager.parameters()])
    grads_c = torch.autograd.grad((out_c * proj).sum(), [xc, *compiled_module.parameters()])
    for g_c, g_e in zip(grads_c, grads_e):
        torch.testing.assert_close(g_c, g_e, atol=tol * max(1.0, g_e.abs().max().item()), rtol=tol)


@pytest.mark.slow
def test_compiled_local_attention_forward_and_backward_match_eager() -> None:
    """Stride 2 here; the StRA block below compiles LocalAttention at stride 1 (compiling is slow)."""
    m = _local_attention(2, "zero").train().double()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    explanation = torch._dynamo.explain(copy.deepcopy(m))(x)
    assert explanation.graph_break_count == 0  # the pure-tensor path: one graph, no opaque Function
    _compiled_matches(m, x, backward=True, backend="aot_eager")


@pytest.mark.slow
def test_compiled_stra_block_forward_and_backward_match_eager() -> None:
    """Through inductor: in training (local and mode attention, forward and backward) and in
    inference, where each part is one fused strabench:: operator that inductor calls as it is."""
    torch.manual_seed(0)
    block = StRA(32, groups=8).train()
    paper_reference.set_random_batch_norm(block)
    _compiled_matches(block.double(), torch.randn(2, 32, 8, 6, dtype=torch.float64), backward=True)
    inference = StRA(32, groups=8).eval()
    paper_reference.set_random_batch_norm(inference)
    assert fuse_for_inference(inference)  # as `bench` and `export` do
    with torch.no_grad():
        _compiled_matches(inference, torch.randn(2, 32, 8, 6), backward=False)


@pytest.mark.slow
def test_compiled_registered_model_forward_matches_eager() -> None:
    from strabench.measure.report import build_for_input

    model = build_for_input("fer_resnet_stra", (44, 44)).eval()
    with torch.no_grad():
        _compiled_matches(model, torch.randn(2, 1, 44, 44), backward=False, backend="aot_eager")


def test_a_compile_run_has_room_for_every_model_and_puts_the_limit_back() -> None:
    """torch.compile runs the 9th variant of a shared function in eager after recompile_limit (8):
    a bench of ten ResNet-50 variants would time the last ones uncompiled."""
    import torch._dynamo

    before = torch._dynamo.config.recompile_limit
    with runtimes.runtime_session("compile", 10):
        assert torch._dynamo.config.recompile_limit >= 80
        assert torch._dynamo.config.accumulated_recompile_limit >= 80
    assert torch._dynamo.config.recompile_limit == before
    with runtimes.runtime_session("eager", 10):
        assert torch._dynamo.config.recompile_limit == before


def test_a_model_that_does_not_compile_is_refused_not_timed_in_eager() -> None:
    class Opaque(nn.Module):
        @torch.compiler.disable
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    with pytest.raises(ConfigError, match="fell back to eager"):
        runtimes.prepare_step("compile", Opaque().eval(), torch.randn(2, 3), None, name="Opaque", mode="infer",
                              amp="none", optimizer=None, threads=1)

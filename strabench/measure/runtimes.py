"""Runtimes a model can be timed (and shipped) in: eager PyTorch, ``torch.compile``, ONNX Runtime.

``prepare_step`` is the one seam ``strabench.measure.latency`` calls: it turns a prepared model
and its batch into the step ``Timer`` runs, and reports what preparing cost (``compile_s``)
separately, so compilation or export never lands in a warm-up or median.

- ``eager``: the model as is (``steps.make_step``); ``compile_s`` is None.
- ``compile``: ``torch.compile(model)`` (inductor). Compilation happens on the first call, so
  ``compile_s`` is the wall time of that first step (it compiles, then runs once); warm-up and
  timing start after it.
- ``onnxruntime``: inference only. The eval model is exported through ``torch.onnx`` at the
  bench batch, loaded in an ``InferenceSession`` (CPU provider with ``intra_op_num_threads`` =
  the bench threads and ``inter_op_num_threads`` = 1, or CUDA's on a GPU), and
  ``compile_s`` is export + session creation. Before any timing its outputs are checked
  against eager PyTorch on the bench input (``check_outputs``); the timed step is one
  ``run_with_iobinding`` on inputs bound once, as the eager step reuses its input tensor.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. It exports every
registered model in about a second each, needs no package beyond ``onnx``, and the StRA blocks
reach it as standard ONNX ops: it traces inside ``strabench.layers.ops.decomposed()``, where
every ``strabench::`` operator runs its registered decomposition into plain torch ops. The
``torch.export`` based exporter (``dynamo=True``) would add onnxscript and take longer per model
for the same graph.

Inference (every runtime, and ``export_model``) runs the model after
``strabench.layers.kernels.fuse_for_inference`` (each StRA block one operator call on its BNs'
running statistics), with ``kernels="fused"``; ``kernels="stock"`` runs every block in plain
torch ops instead (``use_kernels``), the design comparison.

This module imports torch, onnx and onnxruntime only inside functions.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from strabench.errors import ConfigError, DeviceError, ExportError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "PREPARING",
    "ONNX_ATOL",
    "ONNX_OPSET",
    "ONNX_RTOL",
    "RUNTIMES",
    "Prepared",
    "check_outputs",
    "check_runtime",
    "describe_implementation",
    "export_model",
    "export_onnx",
    "onnx_session",
    "prepare_step",
    "require_onnx",
    "tolerance_text",
]

RUNTIMES = ("eager", "compile", "onnxruntime")
#: what preparing did before warm-up, for progress lines
PREPARING = {"compile": ", after torch.compile", "onnxruntime": ", after the ONNX export and its check against eager"}
ONNX_OPSET = 17

# Exported vs eager outputs, float32: max |ort - eager| <= ONNX_ATOL + ONNX_RTOL * max |eager|.
# Both sides compute in float32 with different kernels and summation orders; over a ResNet-50's
# ~50 layers that is measured at a few 1e-7 of outputs of size ~1, so 1e-4 leaves a 100x margin
# and still fails on any real translation error (a wrong offset, border or group changes
# outputs by 1e-2 or more of their scale).
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4

INPUT_NAME = "input"


def tolerance_text() -> str:
    """The tolerance as users read it in messages and the README."""
    return f"max|diff| <= {ONNX_ATOL:g} + {ONNX_RTOL:g} * max|eager|"


@dataclass
class Prepared:
    """The step ``Timer`` runs, and the one-off cost of getting it (None in eager)."""

    step: Callable[[], None]
    compile_s: float | None = None
    max_abs_diff: float | None = None  # onnxruntime: exported vs eager on the bench input


@contextlib.contextmanager
def runtime_session(runtime: str, models: int) -> Iterator[None]:
    """What a run of ``models`` models needs around it under ``runtime``.

    ``compile``: torch.compile keys its compiled code on the Python code objects, which models of
    one family share (``Bottleneck.forward`` ...), and after ``recompile_limit`` (8) variants of
    one function it silently runs the rest in eager. A bench of ten ResNet-50 variants in one
    process would then time the last few uncompiled; the limits are raised for the run (and put
    back after it), and ``prepare_step`` checks that each model did compile.
    """
    if runtime != "compile":
        yield
        return
    import torch._dynamo

    limit = max(8, 8 * models)
    with torch._dynamo.config.patch(recompile_limit=limit, accumulated_recompile_limit=max(256, 16 * limit)):
        yield


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def require_onnx(what: str) -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or one line saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError(f"{what} needs the onnx extra: pip install 'strabench[onnx]'") from None
    return onnx, onnxruntime


def outputs_of(value: Any, name: str) -> list["torch.Tensor"]:
    """A model's output as the list of tensors ONNX gives back (a tensor, or a tuple/list of them)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and value and all(isinstance(t, torch.Tensor) for t in value):
        return list(value)
    raise ExportError(f"{name} returns {type(value).__name__} in eval mode; only tensors (or tuples of them) export to ONNX")


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter's deprecation notice and tracer warnings (our shape checks become constants,
    which is what a fixed-shape export wants) say nothing actionable to a user."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        yield


def export_onnx(model: "nn.Module", example: "torch.Tensor", *, name: str, dynamic_batch: bool = False) -> bytes:
    """``model`` (in eval mode, on ``example``'s device) as an ONNX model, in memory: nothing is
    written until it has been checked, so a failed export never leaves or clobbers a file."""
    import io

    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = outputs_of(model(example), name)
        output_names = [f"output{i}" if len(outputs) > 1 else "output" for i in range(len(outputs))]
        dynamic_axes = {n: {0: "batch"} for n in (INPUT_NAME, *output_names)} if dynamic_batch else None
        buffer = io.BytesIO()
        from strabench.layers.ops import decomposed

        with _quiet_export(), torch.no_grad(), decomposed():
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=output_names, dynamic_axes=dynamic_axes,
            )
    except (RuntimeError, ValueError, TypeError) as exc:  # the exporter's own failures: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{name}: ONNX export failed: {first}") from None
    finally:
        model.train(was_training)
    return buffer.getvalue()


def onnx_session(model_bytes: bytes, *, device: str, threads: int) -> Any:
    """An ``InferenceSession`` for an exported model: CPU provider with ``threads`` intra-op threads and one
    inter-op thread, or CUDA's on ``device="cuda"`` (an error if this onnxruntime lacks it)."""
    _, ort = require_onnx("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no per-session provider chatter on stderr
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError(
                "--device cuda with onnxruntime needs onnxruntime's CUDAExecutionProvider "
                f"(this onnxruntime has {', '.join(ort.get_available_providers())}; install onnxruntime-gpu)"
            )
        providers = ["CUDAExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(model_bytes, options, providers=providers)


def check_outputs(session: Any, model: "nn.Module", inputs: "torch.Tensor", *, name: str) -> float:
    """Run ``session`` and eager ``model`` (eval) on ``inputs``; the max abs difference, or an
    ExportError naming it when it exceeds ``ONNX_ATOL + ONNX_RTOL * max|eager|``."""
    import numpy as np
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            want = [t.float().cpu().numpy() for t in outputs_of(model(inputs), name)]
    finally:
        model.train(was_training)
    got = session.run(None, {INPUT_NAME: inputs.detach().cpu().numpy()})
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        raise ExportError(
            f"{name}: ONNX outputs {[g.shape for g in got]} differ in shape from eager {[w.shape for w in want]}"
        )
    diff = max(float(np.max(np.abs(g.astype(np.float64) - w))) if w.size else 0.0 for g, w in zip(got, want))
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0 for w in want)
    limit = ONNX_ATOL + ONNX_RTOL * scale
    if not diff <= limit:  # NaN fails too
        raise ExportError(
            f"{name}: onnxruntime output differs from eager PyTorch by {diff:.3g} (max|eager| {scale:.3g}; "
            f"allowed {tolerance_text()} = {limit:.3g})"
        )
    return diff


def _ort_step(session: Any, inputs: "torch.Tensor", device: str) -> Callable[[], None]:
    """One ``run_with_iobinding`` with the input bound once (on the GPU for CUDA), outputs on the device."""
    _, ort = require_onnx("onnxruntime")
    array = inputs.detach().cpu().numpy()
    binding = session.io_binding()
    if device == "cuda":
        binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    else:
        binding.bind_cpu_input(INPUT_NAME, array)
    for output in session.get_outputs():
        binding.bind_output(output.name, device)

    def onnxruntime_step() -> None:
        session.run_with_iobinding(binding)

    return onnxruntime_step


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def prepare_step(
    runtime: str,
    model: "nn.Module",
    inputs: "torch.Tensor",
    labels: "torch.Tensor | None",
    *,
    name: str,
    mode: str,
    amp: str,
    optimizer: "torch.optim.Optimizer | None",
    threads: int,
    record: dict | None = None,
    kernels: str = "fused",
) -> Prepared:
    """The timed step of ``model`` on ``inputs`` under ``runtime``, with what preparing it cost.

    ``model`` is already on the device, in the memory format and train/eval mode of the run.
    Combinations a runtime cannot honour (train or autocast with onnxruntime) are refused by
    ``BenchSpec`` before any model is built. ``kernels`` (``use_kernels``): "fused" runs StRA's
    operators (and, in inference, each block fused into one: ``fuse_for_inference``), "stock"
    every block in plain torch ops.
    """
    from strabench.layers.kernels import fuse_for_inference, use_kernels
    from strabench.measure import steps

    use_kernels(model, kernels)
    if mode == "infer" and kernels == "fused":
        fuse_for_inference(model)
    device = inputs.device.type
    if runtime == "eager":
        return Prepared(steps.make_step(model, inputs, labels, mode=mode, amp=amp, optimizer=optimizer, record=record))
    if runtime == "compile":
        import torch

        step = steps.make_step(torch.compile(model), inputs, labels, mode=mode, amp=amp, optimizer=optimizer, record=record)
        graphs = _compiled_graphs()
        start = time.perf_counter()
        try:
            step()  # compiles (forward, and backward in train mode), then runs once
        except Exception as exc:  # noqa: BLE001 - re-raised unless the machine lacks a compiler
            missing = _missing_compiler(exc)
            if missing is None:
                raise
            raise ConfigError(f"--runtime compile needs a working C++ compiler for {device} code (torch.compile's "
                              f"inductor builds one): {missing}; install one (g++ or clang, or set CXX) or use --runtime eager") from None
        _sync(device)
        compile_s = time.perf_counter() - start
        if _compiled_graphs() == graphs:
            raise ConfigError(f"{name}: torch.compile produced no graph (it fell back to eager), so its timing "
                              "would not be of a compiled model")
        return Prepared(step, compile_s=compile_s)
    if runtime == "onnxruntime":
        require_onnx("--runtime onnxruntime")
        start = time.perf_counter()
        session = onnx_session(export_onnx(model, inputs, name=name), device=device, threads=threads)
        compile_s = time.perf_counter() - start
        diff = check_outputs(session, model, inputs, name=name)
        return Prepared(_ort_step(session, inputs, device), compile_s=compile_s, max_abs_diff=diff)
    raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")


def _missing_compiler(exc: BaseException) -> str | None:
    """What torch.compile said when it found no C++ compiler (anywhere in ``exc``'s chain), else None.

    Recognised by the name inductor gives that error (``InvalidCxxCompiler``) or its message, so
    no private torch module is imported; any other failure keeps its traceback (a bug)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split())
        if type(current).__name__ == "InvalidCxxCompiler" or "No working C++ compiler" in text:
            start = text.find("No working C++ compiler")
            end = text.find(")", start)
            return text[start:end + 1 if end > start else start + 120] if start >= 0 else "no working C++ compiler found"
        current = current.__cause__ or current.__context__
    return None


def describe_implementation(model: "nn.Module", shape: tuple[int, ...], device: str, runtime: str,
                            channels_last: bool) -> str:
    """What ``model``'s blocks run, as a latency row names it: ``StRA: local_attention_infer +
    mode_attention_infer; SASA: SDPA`` (``strabench.layers.kernels.implementations`` on one image
    of the model as prepared), under ``runtime``; "" for a model without such blocks."""
    import torch

    from strabench.layers.kernels import implementations

    x = torch.zeros(1, *shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    try:  # eval: no BN statistics move; a train-mode block runs the same operators
        found = implementations(model.eval(), x)
    finally:
        model.train(was_training)
    text = "; ".join(f"{block}: {ran}" for block, ran in found.items())
    if text and runtime == "onnxruntime":
        return f"ONNX Runtime, exported from the decompositions of ({text})"
    return f"{text} (torch.compile)" if text and runtime == "compile" else text


def check_runtime(runtime: str, *, mode: str, amp: str, channels_last: bool) -> None:
    """Refuse, in one line, what a runtime cannot do (called by ``BenchSpec``)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "onnxruntime":
        return
    if mode != "infer":
        raise ConfigError("--runtime onnxruntime times inference only; use --mode infer (or --runtime eager/compile for train)")
    if amp != "none":
        raise ConfigError(f"--amp {amp} means nothing with --runtime onnxruntime (it runs the exported float32 graph); drop --amp")
    if channels_last:
        raise ConfigError("--channels-last means nothing with --runtime onnxruntime (onnxruntime picks its own layouts); drop --channels-last")



def export_model(
    name: str,
    path: str | os.PathLike,
    *,
    input_size: tuple[int, int] | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    replace: "Mapping[str, str] | None" = None,
    threads: int | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Export registered model ``name`` to ONNX at ``path``, checked before it is written.

    The model is built for ``input_size`` (default: its own) with random weights, or, from a
    ``checkpoint`` (a strabench checkpoint or a state_dict, read with ``weights_only``), as it
    was trained (input size, blocks and class count from the checkpoint, every tensor loaded
    strictly; ``input_size`` and ``replace`` still win). It is exported at ``batch`` images
    (``dynamic_batch``: the batch axis is left free, and checked at ``batch + 1`` too). The
    file passes ``onnx.checker`` and onnxruntime's CPU output is within ``tolerance_text()`` of
    eager PyTorch's on a random input before it atomically replaces ``path``; on any failure
    an existing file is left as it was. Returns what was written and the max abs difference.
    """
    onnx, _ = require_onnx("strabench export")
    import torch

    from strabench.measure.report import build_for_input
    from strabench.registry import model_info

    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"--batch must be a positive integer, got {batch!r}")
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--onnx {target} is a directory")
    info = model_info(name)
    requested = tuple(input_size) if input_size else None
    blocks = dict(replace) if replace else None
    if checkpoint is not None:
        from strabench.train.saved import model_from_checkpoint

        model, _, size = model_from_checkpoint(name, Path(checkpoint), requested, blocks)
        model.eval()
    else:
        size = info.input_size(requested)
        model = build_for_input(name, size, replace=blocks).eval()
    from strabench.layers.kernels import fuse_for_inference

    fuse_for_inference(model)  # what is exported, and the eager model it is checked against
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(batch, info.default_input[0], *size, generator=gen)
    data = export_onnx(model, example, name=name, dynamic_batch=dynamic_batch)
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{name}: the exported model fails onnx.checker: {str(exc).strip().splitlines()[0]}") from None
    session = onnx_session(data, device="cpu", threads=threads or (os.cpu_count() or 1))
    checks = [example] + ([torch.randn(batch + 1, *example.shape[1:], generator=gen)] if dynamic_batch else [])
    diff = max(check_outputs(session, model, x, name=name) for x in checks)
    from strabench.io import atomic_write_bytes, ensure_directory

    ensure_directory(target.parent)
    atomic_write_bytes(target, data)
    return {
        "model": name,
        "onnx": str(target),
        "bytes": len(data),
        "input": f"{size[0]}x{size[1]}",
        "channels": info.default_input[0],
        "batch": "dynamic" if dynamic_batch else batch,
        "checked_batches": [int(x.shape[0]) for x in checks],
        "opset": ONNX_OPSET,
        "exporter": "torch.onnx (TorchScript-based, dynamo=False)",
        "max_abs_diff": diff,
        "tolerance": tolerance_text(),
        "replace": blocks,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
    }

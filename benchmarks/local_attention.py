"""Latency of StRA's LocalAttention against the 3x3 conv it replaces, and where its time goes.

One process, one run: the layers are timed with ``torch.utils.benchmark.Timer`` at the
StRA-ResNet-50 layer4 shape (C=512, 16x8 maps, batch 32): in train mode forward only (under
``no_grad``) and forward+backward (gradients w.r.t. the input and every parameter of a
random-projection loss), and in eval mode forward only. Prints JSON; ``--out`` also writes it
to a file. Medians and IQRs are the headline; ``ratios_of_min`` (fastest block) is the better
estimate on a machine other processes are using (the JSON records the load average).

    python benchmarks/local_attention.py [--threads 2] [--channels-last] [--parts] [--out result.json]
    python benchmarks/local_attention.py --device cuda --amp bf16 --channels-last

The layers: ``local_attention_fast`` (the block as built, ``kernels="fused"``: on the CPU in NCHW
its grouped 1x1 convs on the ``strabench::grouped_pointwise`` operator and its attention the
``strabench::local_attention`` operator; in channels_last stock convs with the
``strabench::local_weighted_sum`` operator; in eval mode fused for inference, one
``strabench::local_attention_infer`` call; each row's ``implementation`` names what ran),
``local_attention_stock`` (``use_kernels(..., "stock")``: every layer in plain torch ops, the
op-per-pass weighting), ``local_attention_unfold`` (stock, the authors' unfold weighting) and
``conv3x3``. ``--parts`` also times the block's three parts on their own, each with its ratio to
the conv. In NCHW: ``part_value_conv`` (the grouped 1x1 value projection), ``part_branch`` (the
logit branch from x: grouped 1x1 conv, BN, tanh, grouped 1x1 conv, BN) and
``part_attention_operator`` (softmax and weighting from fixed logits). Elsewhere:
``part_value_conv``, ``part_attention`` (the softmax weights: the logit branch, omega + nu,
softmax) and ``part_weighting`` (the weighted sum, fixed weights as its parameter).

``--device cuda`` times on the GPU (the clock synchronises it before every reading);
``--amp bf16`` runs every layer under bf16 autocast, the precision GPU users train in.

Each result also says how many bytes one call moves (``strabench.measure.traffic``): ``mb_moved``,
the tensors every aten op reads and writes, op by op (``kernels`` ops); ``mb_compulsory``, the
floor (inputs, parameters and outputs once; for fwd+bwd the input, parameters and R read and
their gradients written); and each as milliseconds at this machine's copy bandwidth
(``machine.copy_bandwidth_gbs``). ``memory_bound_fraction`` = ``ms_at_bandwidth`` / median:
near 1, the time is the traffic of the ops as written; far below 1, the ops are slower than
their traffic (overheads, compute, poor kernels).

Targets: fast/conv for forward+backward <= 0.5 (the block must meet it for StRA's FLOP saving to
show up as a speed-up on a small CPU) and <= 0.08 (the block near its memory limit).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.benchmark import Timer

from strabench.env import configure_process, describe_environment
from strabench.layers import ops
from strabench.layers._local_kernel import status as local_kernel_status
from strabench.layers.kernels import fuse_for_inference, implementations, use_kernels
from strabench.layers._local_ops import local_weighted_sum
from strabench.layers.local_attention import LocalAttention
from strabench.measure.traffic import compulsory_bytes, copy_bandwidth, count_bytes


def _machine(threads: int, device: str = "cpu") -> dict:
    env = describe_environment(device)
    return {
        "cpu": env["cpu"],
        **({"gpu": env["device_name"], "cuda": env["cuda"]} if device == "cuda" else {}),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "git_commit": env["git_commit"],
        "git_dirty": env["git_dirty"],
    }


def _step(model: nn.Module, x: Tensor, mode: str, grad: Tensor, amp: str = "none") -> Callable[[], object]:
    inputs = [x, *model.parameters()]
    device = x.device.type

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()

    def fwd() -> object:
        with torch.no_grad(), autocast():
            return model(x)

    grads = {grad.dtype: grad}  # R in the output's dtype, converted once (during warm-up), not per call

    def fwdbwd() -> object:
        with autocast():
            out = model(x)
        if out.dtype not in grads:
            grads[out.dtype] = grad.to(out.dtype)
        # = d(sum(out * R))/d(inputs); a part that does not read x has no gradient for it
        return torch.autograd.grad(out, inputs, grads[out.dtype], allow_unused=True)

    return fwdbwd if mode == "fwd+bwd" else fwd



class _Attention(nn.Module):
    """Part of the block: its attention weights (the logit branch's convs, BN, tanh, omega + nu, softmax)."""

    def __init__(self, block: LocalAttention) -> None:
        super().__init__()
        self.block = copy.deepcopy(block)
        self.block.value = nn.Identity()  # not part of the weights: no parameters without gradients

    def forward(self, x: Tensor) -> Tensor:
        return self.block.attention(x)


class _Weighting(nn.Module):
    """Part of the block: the weighting alone, with fixed softmax weights as its parameter."""

    def __init__(self, block: LocalAttention, x: Tensor) -> None:
        super().__init__()
        with torch.no_grad():
            attn = block.attention(x)
        self.groups = attn.shape[1]
        # kept 4-D (B, G*K*K, H, W), so it follows the layers into channels_last
        self.attn = nn.Parameter(attn.detach().flatten(1, 2).clone())

    def forward(self, x: Tensor) -> Tensor:
        return local_weighted_sum(self.attn.unflatten(1, (self.groups, -1)), x, 3, 1)


class _Branch(nn.Module):
    """Part of the block: its logit branch (grouped 1x1 conv, BN, tanh, grouped 1x1 conv, BN) from x."""

    def __init__(self, block: LocalAttention) -> None:
        super().__init__()
        self.branch = copy.deepcopy(block.branch)

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x)


class _AttentionOperator(nn.Module):
    """Part of the block: the ``strabench::local_attention`` operator alone (softmax of fixed logits,
    its parameter, then the weighting of x)."""

    def __init__(self, block: LocalAttention, x: Tensor) -> None:
        super().__init__()
        with torch.no_grad():
            self.logits = nn.Parameter(block.branch(x.detach()))
        self.kernel_size, self.mask = block.kernel_size, block.border == "mask"

    def forward(self, x: Tensor) -> Tensor:
        return ops.local_attention(self.logits, x, self.kernel_size, self.mask)[0]


def _parts(block: LocalAttention, x: Tensor) -> dict[str, nn.Module]:
    """The block's parts as it runs here, to time on their own: where its time goes."""
    if ops.kernel_fits(x):  # NCHW: the value conv and the branch on the GEMM operator, then the attention operator
        return {"part_value_conv": copy.deepcopy(block.value), "part_branch": _Branch(block),
                "part_attention_operator": _AttentionOperator(block, x)}
    return {"part_value_conv": copy.deepcopy(block.value), "part_attention": _Attention(block),
            "part_weighting": _Weighting(block, x)}


def _traffic(fn: Callable[[], object], model: nn.Module, x: Tensor, grad: Tensor, mode: str,
             bandwidth: float, median_s: float) -> dict:
    """Bytes one call moves (op by op, and the floor), and how close the time is to bytes / bandwidth."""
    moved = count_bytes(fn)
    params = list(model.parameters())
    with torch.no_grad():
        out = model(x)
    touched = [x, *params, out] if mode != "fwd+bwd" else [x, *params, grad, x, *params]  # + the gradients written
    floor = compulsory_bytes(*touched)
    return {"mb_moved": round(moved.bytes / 2**20, 2), "kernels": moved.ops, "mb_compulsory": round(floor / 2**20, 2),
            "ms_at_bandwidth": round(moved.bytes / bandwidth * 1e3, 3),
            "ms_compulsory_at_bandwidth": round(floor / bandwidth * 1e3, 3),
            "memory_bound_fraction": round(moved.bytes / bandwidth / median_s, 3)}


def _ratios(t: dict[tuple[str, str], float]) -> dict[str, float]:
    fast, stock, unfold, conv = "local_attention_fast", "local_attention_stock", "local_attention_unfold", "conv3x3"
    return {
        "fast_vs_conv_fwd": round(t[fast, "fwd"] / t[conv, "fwd"], 3),
        "fast_vs_conv_fwdbwd": round(t[fast, "fwd+bwd"] / t[conv, "fwd+bwd"], 3),
        "fast_vs_conv_fwd_eval": round(t[fast, "fwd_eval"] / t[conv, "fwd_eval"], 3),
        "stock_vs_conv_fwd_eval": round(t[stock, "fwd_eval"] / t[conv, "fwd_eval"], 3),
        "stock_vs_conv_fwdbwd": round(t[stock, "fwd+bwd"] / t[conv, "fwd+bwd"], 3),
        "unfold_vs_conv_fwd": round(t[unfold, "fwd"] / t[conv, "fwd"], 3),
        "unfold_vs_conv_fwdbwd": round(t[unfold, "fwd+bwd"] / t[conv, "fwd+bwd"], 3),
        "fast_vs_stock_fwdbwd": round(t[fast, "fwd+bwd"] / t[stock, "fwd+bwd"], 3),
        "fast_vs_unfold_fwdbwd": round(t[fast, "fwd+bwd"] / t[unfold, "fwd+bwd"], 3),
    }


def _cuda_clock() -> float:
    """Wall time after the GPU has finished what was queued (kernels run asynchronously)."""
    torch.cuda.synchronize()
    return time.perf_counter()


def run(batch: int, channels: int, height: int, width: int, groups: int, threads: int,
        channels_last: bool, min_run_time: float, seed: int, clock: str = "wall",
        device: str = "cpu", amp: str = "none", parts: bool = False) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models: dict[str, nn.Module] = {
        "local_attention_fast": LocalAttention(channels, groups=groups, impl="auto"),
        "local_attention_stock": use_kernels(LocalAttention(channels, groups=groups), "stock"),
        "local_attention_unfold": use_kernels(LocalAttention(channels, groups=groups, impl="unfold"), "stock"),
        "conv3x3": nn.Conv2d(channels, channels, 3, padding=1, bias=False),
    }
    for name in ("local_attention_stock", "local_attention_unfold"):
        models[name].load_state_dict(models["local_attention_fast"].state_dict())
    x = torch.randn(batch, channels, height, width).to(device, memory_format=fmt).requires_grad_()
    grad = torch.randn(batch, channels, height, width).to(device, memory_format=fmt)
    if parts:
        models.update(_parts(models["local_attention_fast"].to(device, memory_format=fmt), x))
    # "cpu" (process CPU time) is for a busy shared box at --threads 1: it does not count the
    # time the OS gives other processes; with several threads it would count spin-waiting
    timer = _cuda_clock if device == "cuda" else time.perf_counter if clock == "wall" else time.process_time
    load_before = os.getloadavg()
    bandwidth = copy_bandwidth(device=device)
    results = []
    for name, model in models.items():
        model.to(device, memory_format=fmt)
        with torch.no_grad():
            shape = model(x).shape
        # R for a part whose output is not the block's (the attention weights): its own, seeded
        r = grad if shape == grad.shape else torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        for mode in ("fwd", "fwd+bwd", "fwd_eval"):
            model.train(mode != "fwd_eval")
            timed = model
            if mode == "fwd_eval" and name == "local_attention_fast":  # inference: the block as one operator call
                timed = copy.deepcopy(model).eval()
                fuse_for_inference(timed)
            with torch.no_grad():
                implementation = implementations(timed, x.detach()).get("LocalAttention", "torch ops") \
                    if isinstance(timed, LocalAttention) else None
            fn = _step(timed, x, mode, r, amp)
            for _ in range(3):  # warm-up: allocator, oneDNN primitive caches
                fn()
            m = Timer("fn()", globals={"fn": fn}, num_threads=threads, timer=timer,
                      label=name, description=mode).blocked_autorange(min_run_time=min_run_time)
            results.append({"name": name, "mode": mode, "implementation": implementation,
                            "median_ms": round(m.median * 1e3, 3),
                            "iqr_ms": round(m.iqr * 1e3, 3), "min_ms": round(min(m.times) * 1e3, 3),
                            "runs": len(m.times), **_traffic(fn, timed, x, r, mode, bandwidth, m.median)})
    ratios = _ratios({(r["name"], r["mode"]): r["median_ms"] for r in results})
    if parts:
        t = {(r["name"], r["mode"]): r["median_ms"] for r in results}
        for part in (name for name in models if name.startswith("part_")):
            ratios[f"{part}_vs_conv_fwdbwd"] = round(t[part, "fwd+bwd"] / t["conv3x3", "fwd+bwd"], 3)
    # on a shared box the fastest block is the best estimate of the undisturbed time
    ratios_of_min = _ratios({(r["name"], r["mode"]): r["min_ms"] for r in results})
    machine = _machine(threads, device)
    machine["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    machine["copy_bandwidth_gbs"] = round(bandwidth / 1e9, 2)
    machine["local_attention_kernel"] = local_kernel_status() if device == "cpu" else "shifted (op-per-pass, on the GPU)"
    return {
        "machine": machine,
        "config": {"batch": batch, "channels": channels, "height": height, "width": width,
                   "groups": groups, "kernel_size": 3, "stride": 1, "border": "zero",
                   "memory_format": "channels_last" if channels_last else "contiguous",
                   "fwd": "train mode, forward under torch.no_grad()",
                   "fwd_eval": "eval mode, forward under torch.no_grad() (inference)",
                   "fwd+bwd": "train mode, forward + grads w.r.t. input and all parameters of sum(out * R), R fixed random",
                   "clock": ("wall (perf_counter after torch.cuda.synchronize)" if device == "cuda"
                             else "wall (perf_counter)" if clock == "wall" else "process CPU time"),
                   "min_run_time_s": min_run_time, "seed": seed, "device": device,
                   "amp": "bf16 autocast" if amp == "bf16" else "none (fp32)"},
        "results": results,
        "ratios": ratios,
        "ratios_of_min": ratios_of_min,
        "targets": {"fwdbwd_le_0.5": ratios["fast_vs_conv_fwdbwd"] <= 0.5,
                    "fwdbwd_le_0.08": ratios["fast_vs_conv_fwdbwd"] <= 0.08},
    }


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2: all cores of the dev box)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--height", type=int, default=16)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--channels-last", action="store_true", help="run all three layers in channels_last")
    p.add_argument("--min-run-time", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default) or process CPU time (for a shared machine, with --threads 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--amp", choices=["none", "bf16"], default="none", help="bf16: every layer under bf16 autocast")
    p.add_argument("--parts", action="store_true",
                   help="also time the block's parts alone (value conv, attention weights, weighting)")
    p.add_argument("--out", type=Path, help="also write the JSON here (atomically)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "local_attention.py: --device cuda requested but no CUDA GPU is available\n")
    if a.device == "cuda" and a.clock == "cpu":
        p.exit(2, "local_attention.py: --clock cpu measures host CPU time, not GPU time: use --clock wall with --device cuda\n")
    allocator = configure_process(calm_threads=False)["allocator"]  # as `strabench bench` does on CPU
    result = run(a.batch, a.channels, a.height, a.width, a.groups, a.threads, a.channels_last,
                 a.min_run_time, a.seed, a.clock, a.device, a.amp, a.parts)
    result["machine"]["allocator"] = allocator
    text = json.dumps(result, indent=2)
    print(text)
    if a.out is not None:
        _write_atomic(a.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

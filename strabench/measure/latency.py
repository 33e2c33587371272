# Over 600 lines on purpose: building, preparing, timing and reporting models are one benchmark run (its rules are strabench.measure.timing).
"""Latency, throughput and peak memory of models, measured so comparisons hold.

On a shared 2-core machine absolute milliseconds drift by tens of percent from one minute to
the next, so the number that matters is a model's time *relative to a baseline measured around
it*. ``benchmark_models`` therefore:

1. builds every model (``build_for_input``: input-sized heads, ``check_input``) before running
   any, prepares it for the ``runtime`` (``strabench.measure.runtimes``: torch.compile's first
   call or the ONNX export + session, timed on its own as ``compile_s``), then warms each one up
   (``warmup`` steps; an out-of-memory error during preparation or warm-up halves the batch,
   down to 1, and the row's ``batch`` and ``note`` say so). Every model, the baseline included,
   runs under the same runtime, so ratios compare like with like;
2. reads peak memory on one more, untimed step (see ``peak_step_memory``);
3. times ``rounds`` rounds. With a baseline a round is ``B c1 B c2 ... B cn B``: every candidate
   is bracketed by two baseline measurements, and its per-round ratio is its per-image median
   over the mean of those two (exact under linear drift). Rounds chain (the closing baseline
   measurement opens the next round) and alternate direction. ``ratio_to_baseline`` is the
   median of the per-round ratios;
4. each measurement is ``torch.utils.benchmark.Timer.blocked_autorange(min_run_time)`` (whose
   block-size estimate runs the step once untimed, i.e. a re-warm-up after switching models);
   a model's ``median_ms`` / ``iqr_ms`` come from all its measurements merged, and
   ``ratio_rounds`` keeps the per-round ratios so their spread can be judged.

Train mode times one full step: forward in train mode, cross-entropy on random labels plus
every auxiliary loss the model returns (StRA's diversity loss), backward, ``SGD(lr=1e-4,
momentum=0.9)`` step, ``zero_grad(set_to_none=True)``. The small learning rate keeps the
repeated steps on one batch finite (NaNs/denormals would change the speed).

Models are registry names, references (``torchvision:resnet18``, ``package.module:callable``) or
``nn.Module`` objects. A module has no default input, so it needs ``input_size``; it gets 3 input
channels (or its ``in_chans`` attribute, timm's name for it), is labelled by its class name
(``MyNet``, ``MyNet#2`` for a second one) and is benchmarked as a copy: the caller's module is
neither moved nor trained.

This module imports torch only inside functions, so the CLI and suite configs can import
``BenchSpec`` cheaply.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from strabench.env import describe_environment
from strabench.errors import ConfigError, DeviceError, ShapeError, clip
from strabench.measure.timing import (  # noqa: F401 - part of this module's API
    MIN_SAMPLES, NOISY_IQR_FRACTION, OtherLoad, _load_average, bracket_ratios, fit_batch, noise_reasons, schedule,
)
from strabench.measure.bench_csv import CSV_FIELDS, append_csv, check_csv  # noqa: F401 - part of this module's API
from strabench.measure.peak_memory import peak_step_memory
from strabench.measure.steps import make_step, timed_step_loss  # noqa: F401 - part of this module's API
from strabench.measure.runtimes import (
    PREPARING, Prepared, check_runtime, describe_implementation, prepare_step, runtime_session,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "AMPS",
    "KERNEL_CHOICES",
    "STOCK_SUFFIX",
    "BenchSpec",
    "CSV_FIELDS",
    "DEVICES",
    "MODES",
    "OPTIMIZER",
    "append_csv",
    "benchmark_models",
    "bracket_ratios",
    "check_csv",
    "fit_batch",
    "interleave",
    "make_step",
    "peak_step_memory",
    "run_benchmark",
    "schedule",
    "spec_dict",
    "timed_step_loss",
]

MODES = ("infer", "train")
#: ``--kernels``: StRA's blocks on their fused operators (inference: one call per block), in plain
#: torch ops ("stock": the design comparison), or both in one interleaved run (each model's stock
#: twin is labelled ``<model> (stock)``; the fused row also carries the stock ratio).
KERNEL_CHOICES = ("fused", "stock", "both")
STOCK_SUFFIX = " (stock)"
AMPS = ("none", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
OPTIMIZER = "SGD(lr=1e-4, momentum=0.9)"

ProgressFn = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class BenchSpec:
    """How to measure: everything but the model names. Invalid values raise ConfigError."""

    mode: str = "infer"
    batch: int = 32
    input_size: tuple[int, int] | None = None  # (H, W); None = each model's default input
    device: str = "cpu"
    threads: int | None = None  # None = os.cpu_count()
    amp: str = "none"
    channels_last: bool = False
    runtime: str = "eager"  # eager | compile | onnxruntime (strabench.measure.runtimes)
    kernels: str = "fused"  # fused | stock | both (KERNEL_CHOICES)
    min_run_time: float = 1.0  # seconds per measurement (Timer.blocked_autorange)
    rounds: int = 3
    warmup: int = 1  # untimed steps before the memory step and the rounds

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.amp not in AMPS:
            raise ConfigError(f"--amp must be one of {', '.join(AMPS)}, got {self.amp!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.amp == "fp16" and self.device == "cpu":
            raise ConfigError("--amp fp16 is unsupported on cpu (use bf16, or fp16 with --device cuda)")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch <= 0:
            raise ConfigError(f"--batch must be a positive integer, got {self.batch!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads <= 0):
            raise ConfigError(f"--threads must be a positive integer, got {self.threads!r}")
        if not self.min_run_time > 0:
            raise ConfigError(f"--min-run-time must be > 0 seconds, got {self.min_run_time!r}")
        if not isinstance(self.rounds, int) or self.rounds <= 0:
            raise ConfigError(f"--rounds must be a positive integer, got {self.rounds!r}")
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise ConfigError(f"warmup must be an integer >= 1, got {self.warmup!r}")
        check_runtime(self.runtime, mode=self.mode, amp=self.amp, channels_last=self.channels_last)
        if self.kernels not in KERNEL_CHOICES:
            raise ConfigError(f"--kernels must be one of {', '.join(KERNEL_CHOICES)}, got {self.kernels!r}")
        if self.input_size is not None:
            h, w = self.input_size
            if h <= 0 or w <= 0:
                raise ConfigError(f"--input must be positive, got {h}x{w}")

    @property
    def num_threads(self) -> int:
        return self.threads if self.threads is not None else (os.cpu_count() or 1)


# --- benchmarking -----------------------------------------------------------------------------------


@dataclass
class _Subject:
    """One model being benchmarked, with everything its measurements need."""

    name: str
    model: Any
    step: Callable[[], None]
    batch: int
    shape: tuple[int, int, int]
    timer: Any
    warmup_s: float
    weights_mb: float
    aux_losses: list[str]
    compile_s: float | None = None
    kernels: str = "fused"
    implementation: str = ""
    notes: list[str] = field(default_factory=list)
    peak_mem_mb: float | None = None
    mem_method: str = ""
    measurements: list = field(default_factory=list)


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda requested but no CUDA GPU is available (torch.cuda.is_available() is False)")


def _is_oom(exc: BaseException) -> bool:
    """Out of memory on any device: CUDA's error, Python's MemoryError, or the CPU allocator's
    RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _fit_or_refuse(attempt: Callable[[int], T], batch: int, *, name: str, shape: tuple, device: str,
                   cleanup: Callable[[], None]) -> tuple[T, int]:
    """``fit_batch`` with out-of-memory at batch 1 as one line naming the model and input."""
    try:
        return fit_batch(attempt, batch, is_oom=_is_oom, cleanup=cleanup)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is out of memory
        if not _is_oom(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = (f"{name} does not fit in {device} memory even at batch 1, input {'x'.join(map(str, shape))} "
                   f"({clip(first, 160)}); try a smaller --input")
    cleanup()
    raise ShapeError(message)


def _free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _timer_class():
    """``torch.utils.benchmark.Timer``, imported without its irrelevant "No CUDA runtime" log line."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        log.setLevel(level)
    return Timer


def replaced_label(name: str, replace: "Mapping[str, str]") -> str:
    """``resnet50[layer4.*.conv2=stra]``: a named model with blocks put in, as its row calls it."""
    return f"{name}[{','.join(f'{k}={v}' for k, v in replace.items())}]"


def _labels(
    items: Sequence[Any], baseline: Any, replace: "Mapping[str, str] | None" = None
) -> tuple[dict[str, tuple[Any, "Mapping[str, str] | None"]], str | None]:
    """A unique label per model, in order: ``label -> (name or module, replacements)``.

    A name is its own label (``replaced_label`` with ``replace``, which applies to the named
    models of ``items``, not to the baseline); a module is labelled by its class name. The same
    name or the same module object given twice is measured once; the baseline's label is
    returned with it (None without a baseline).
    """
    from torch import nn

    labels: dict[str, tuple[Any, Mapping[str, str] | None]] = {}
    seen: dict[int, str] = {}

    def label(item: Any, blocks: "Mapping[str, str] | None") -> str:
        if isinstance(item, str):
            name = replaced_label(item, blocks) if blocks else item
            labels.setdefault(name, (item, blocks or None))
            return name
        if not isinstance(item, nn.Module):
            raise ConfigError(f"benchmark_models takes model names or torch.nn.Module objects, got {type(item).__name__}")
        if id(item) not in seen:
            base, n = type(item).__name__, 1
            name = base
            while name in labels:
                n += 1
                name = f"{base}#{n}"
            labels[name] = (item, None)
            seen[id(item)] = name
        return seen[id(item)]

    base_label = label(baseline, None) if baseline is not None else None
    rest = [label(item, replace) for item in items]
    ordered = list(dict.fromkeys(([base_label] if base_label is not None and base_label not in rest else []) + rest))
    return {name: labels[name] for name in ordered}, base_label


def _build(name: str, item: Any, replace: "Mapping[str, str] | None", spec: BenchSpec) -> tuple["nn.Module", tuple[int, int, int]]:
    """The model for ``spec``'s input (ShapeError if it cannot take it) and the (C, H, W) it gets."""
    if not isinstance(item, str):
        return _copy_module(name, item, spec)
    from strabench.measure.report import build_for_input
    from strabench.registry import model_info

    info = model_info(item)
    size = info.input_size(tuple(spec.input_size) if spec.input_size else None)
    model = build_for_input(item, size, replace=dict(replace) if replace else None)
    return model, (info.default_input[0], size[0], size[1])


def _copy_module(name: str, module: "nn.Module", spec: BenchSpec) -> tuple["nn.Module", tuple[int, int, int]]:
    """A copy of a caller's module (benchmarking moves and, in train mode, updates it), checked to
    take one image of the requested input."""
    import copy

    import torch

    from strabench.errors import ShapeError

    assert spec.input_size is not None  # checked by run_benchmark
    channels = getattr(module, "in_chans", 3)
    shape = (channels if isinstance(channels, int) else 3, *spec.input_size)
    model = copy.deepcopy(module)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    except (RuntimeError, ValueError) as exc:
        raise ShapeError(f"{name} cannot take input {shape}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model.train(was_training)
    return model, shape  # type: ignore[return-value]


def _prepare(name: str, model: "nn.Module", shape: tuple[int, int, int], spec: BenchSpec, progress: ProgressFn,
             kernels: str = "fused") -> _Subject:
    """Move ``model`` to the device, build its step and warm it up (halving the batch on OOM)."""
    import torch

    from strabench.optim import build_optimizer

    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(spec.device, memory_format=memory_format)
    model.train(spec.mode == "train")
    weights_mb = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / 2**20
    optimizer = build_optimizer("sgd", model.parameters(), lr=1e-4, momentum=0.9)[0] if spec.mode == "train" else None
    num_classes = getattr(getattr(model, "classifier", None), "out_features", None) or 1
    record: dict = {}

    def attempt(batch: int) -> tuple[Prepared, float]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *shape, generator=gen).to(spec.device, memory_format=memory_format)
        labels = torch.randint(0, num_classes, (batch,), generator=gen).to(spec.device) if spec.mode == "train" else None
        prepared = prepare_step(spec.runtime, model, x, labels, name=name, mode=spec.mode, amp=spec.amp,
                                optimizer=optimizer, threads=spec.num_threads, record=record, kernels=kernels)
        start = time.perf_counter()
        for _ in range(spec.warmup):
            prepared.step()
        if spec.device == "cuda":
            torch.cuda.synchronize()
        return prepared, time.perf_counter() - start

    def cleanup() -> None:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        _free_device_memory()

    progress(f"warm-up {name} ({spec.warmup} step(s){PREPARING.get(spec.runtime, '')})")
    (prepared, warmup_s), batch = _fit_or_refuse(attempt, spec.batch, name=name, shape=shape, device=spec.device, cleanup=cleanup)
    step = prepared.step
    timer = _timer_class()(
        stmt="step()",
        globals={"step": step},
        num_threads=spec.num_threads,
        label=f"strabench bench {spec.mode}",
        sub_label=name,
        description=f"batch {batch} {shape[1]}x{shape[2]} {spec.device} amp={spec.amp}",
    )
    subject = _Subject(name, model, step, batch, shape, timer, warmup_s, weights_mb, record.get("aux_losses", []),
                       compile_s=prepared.compile_s, kernels=kernels,
                       implementation=describe_implementation(model, shape, spec.device, spec.runtime,
                                                              spec.channels_last))
    if batch != spec.batch:
        subject.notes.append(f"batch halved from {spec.batch} to {batch} after out-of-memory")
    if prepared.max_abs_diff is not None:
        subject.notes.append(f"onnxruntime vs eager max|diff| {prepared.max_abs_diff:.2g} on the bench input")
        if spec.device == "cuda":
            subject.notes.append("peak memory: onnxruntime's own CUDA allocations are not seen by torch.cuda")
    return subject


def interleave(
    candidates: Sequence[str],
    baseline: str | None,
    rounds: int,
    measure: Callable[[str], float],
    progress: ProgressFn | None = None,
) -> tuple[list[list[tuple[str, float]]], dict[str, list[float]]]:
    """Measure in ``schedule`` order; ``measure(name)`` returns seconds per image.

    Returns the per-round ``(name, time)`` sequences and, with a baseline, each candidate's
    per-round ratios (``bracket_ratios``).
    """
    plan = schedule(candidates, baseline, rounds)
    total, done = sum(len(seq) for seq in plan), 0
    per_round: list[list[tuple[str, float]]] = []
    for r, seq in enumerate(plan, 1):
        per_round.append([])
        for name in seq:
            value = measure(name)
            per_round[-1].append((name, value))
            done += 1
            if progress:
                progress(f"[{done}/{total}] round {r}/{rounds} {name}: {value * 1e3:.2f} ms/image")
    return per_round, (bracket_ratios(per_round, baseline) if baseline is not None else {})


def run_benchmark(
    spec: BenchSpec,
    names: "Sequence[str | nn.Module]",
    *,
    baseline: "str | nn.Module | None" = None,
    progress: ProgressFn | None = None,
    replace: "Mapping[str, str] | None" = None,
) -> list[dict]:
    """Benchmark ``names`` (and ``baseline``, interleaved) under ``spec``; one result dict per model.

    ``names`` are model names / references or ``nn.Module`` objects (see the module docstring).
    ``replace`` (``{"layer4.*.conv2": "stra"}``, see ``strabench.models.replace``) puts blocks into
    the models named in ``names``, not into the baseline, so ``resnet50`` with blocks put in can be
    timed against plain ``resnet50``; such a row's model is ``replaced_label(name, replace)``.
    Output order: the baseline first if it is not among ``names``, then ``names`` (duplicates
    and the baseline measured once). Every model is built (and its input checked) before any
    is run, so bad input fails fast.
    """
    from strabench.registry import model_info

    progress = progress or (lambda _message: None)
    if not list(names) and baseline is None:
        raise ConfigError("no model to benchmark")
    items, baseline = _labels(list(names), baseline, replace)
    ordered = list(items)
    kernels = {name: ("stock" if spec.kernels == "stock" else "fused") for name in ordered}
    twin_of: dict[str, str] = {}
    if spec.kernels == "both":  # each model's stock twin, right after it
        twin_of = {name + STOCK_SUFFIX: name for name in ordered}
        ordered = [n for name in ordered for n in (name, name + STOCK_SUFFIX)]
        items.update({twin: items[name] for twin, name in twin_of.items()})
        kernels.update({twin: "stock" for twin in twin_of})
    for name, (item, _) in items.items():  # unknown names and inputs fail before anything is built
        if isinstance(item, str):
            model_info(item)
        elif spec.input_size is None:
            raise ConfigError(f"{name} is an nn.Module, which has no default input size: pass input_size=(H, W)")
    _check_device(spec.device)
    load_before = _load_average()
    others = OtherLoad()  # what other processes use while we build and warm up, read before timing starts

    import torch

    with runtime_session(spec.runtime, len(ordered)):  # torch.compile: room for every model
        saved_threads = torch.get_num_threads()
        saved_cudnn = torch.backends.cudnn.benchmark
        try:
            torch.set_num_threads(spec.num_threads)
            torch.backends.cudnn.benchmark = True  # fixed shapes: let warm-up pick the fastest kernels
            built = {name: _build(name, *items[name], spec) for name in ordered if name not in twin_of}
            for twin, name in twin_of.items():  # a model without StRA's blocks is its own stock twin
                if _has_switchable_blocks(built[name][0]):
                    built[twin] = _build(twin, *items[twin], spec)
            ordered = [name for name in ordered if name in built]
            subjects = {name: _prepare(name, *built.pop(name), spec, progress, kernels[name]) for name in ordered}
            for subject in subjects.values():
                progress(f"peak memory {subject.name}")
                subject.peak_mem_mb, subject.mem_method = peak_step_memory(subject.step, spec.device)
            busy_before = others.cores()

            def measure(name: str) -> float:
                subject = subjects[name]
                m = subject.timer.blocked_autorange(min_run_time=spec.min_run_time)
                subject.measurements.append(m)
                return m.median / subject.batch

            candidates = [n for n in ordered if n != baseline]
            _, ratios = interleave(candidates, baseline, spec.rounds, measure, progress)
        finally:
            torch.set_num_threads(saved_threads)
            torch.backends.cudnn.benchmark = saved_cudnn
    common = {**_common_fields(spec), "load_avg": load_before, "busy_cores": busy_before}
    rows = [_row(subjects[name], spec, common, baseline, ratios.get(name)) for name in ordered]
    baseline_row = next((row for row in rows if row["model"] == baseline), None)
    for row in rows:
        reasons = noise_reasons(
            row["median_ms"], row["iqr_ms"], row["samples"], busy_before, common["cpu_count"] or 1,
            baseline_noisy=bool(baseline_row and baseline_row is not row and noise_reasons(
                baseline_row["median_ms"], baseline_row["iqr_ms"], baseline_row["samples"], None, 1)),
        )
        row["noisy"], row["noise"] = bool(reasons), "; ".join(reasons) or None
    if spec.kernels == "both":
        _fold_stock_twins(rows)
    return rows


def _has_switchable_blocks(model: "nn.Module") -> bool:
    from strabench.layers.kernels import switchable

    return switchable(model)


def _fold_stock_twins(rows: list[dict]) -> None:
    """Put each stock twin's ratio, rounds and implementation beside its fused row's. A stock ratio
    is to the stock baseline: where the baseline has StRA's blocks (its stock twin was timed
    against it like any candidate), each round's ratio is divided by the baseline twin's. A model
    without StRA's blocks has no twin: it runs the same either way."""
    by_model = {row["model"]: row for row in rows}
    base = next((row for row in rows if row.get("baseline") == row["model"]), None)
    base_twin = by_model.get(base["model"] + STOCK_SUFFIX) if base is not None else None
    for row in rows:
        if row["model"].endswith(STOCK_SUFFIX):
            continue
        twin = by_model.get(row["model"] + STOCK_SUFFIX, row)
        ratio, rounds = twin["ratio_to_baseline"], twin["ratio_rounds"]
        if row is base:
            ratio, rounds = 1.0, [1.0] * len(rounds or [])
        elif base_twin is not None and rounds:
            rounds = [a / b for a, b in zip(rounds, base_twin["ratio_rounds"])]
            ratio = statistics.median(rounds)
            if twin is not row:
                twin["ratio_to_baseline"], twin["ratio_rounds"] = ratio, rounds
                twin["note"] = "; ".join(filter(None, [twin.get("note"), f"ratio to {base_twin['model']}"]))
        row.update(stock_ratio_to_baseline=ratio, stock_ratio_rounds=rounds, stock_median_ms=twin["median_ms"],
                   stock_implementation=twin["implementation"], stock_noisy=twin["noisy"])


#: A fused row's ``stock_<field>`` copies of its stock twin's fields (``--kernels both``).
STOCK_FIELDS = ("ratio_to_baseline", "ratio_rounds", "median_ms", "implementation", "noisy")


def _common_fields(spec: BenchSpec) -> dict:
    import torch

    info = describe_environment(spec.device)
    return {
        "torch_version": info["torch"],
        "cpu": info["cpu"],
        "cpu_count": info["cpu_count"],
        "gpu": torch.cuda.get_device_name() if spec.device == "cuda" else None,
        "allocator": info["allocator"],
        "omp_wait_policy": info["omp_wait_policy"],
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _row(subject: _Subject, spec: BenchSpec, common: dict, baseline: str | None, ratios: list[float] | None) -> dict:
    from torch.utils.benchmark import Measurement

    (merged,) = Measurement.merge(subject.measurements)
    median = merged.median
    if baseline is None:
        ratio = None
    elif subject.name == baseline:
        ratio, ratios = 1.0, [1.0] * spec.rounds
    else:
        ratio = statistics.median(ratios or [float("nan")])
    return {
        "model": subject.name,
        "mode": spec.mode,
        "batch": subject.batch,
        "input": f"{subject.shape[1]}x{subject.shape[2]}",
        "channels": subject.shape[0],
        "device": spec.device,
        "threads": spec.num_threads,
        "median_ms": median * 1e3,
        "iqr_ms": merged.iqr * 1e3,
        "images_per_s": subject.batch / median,
        "ratio_to_baseline": ratio,
        "ratio_rounds": ratios,
        "baseline": baseline,
        "peak_mem_mb": subject.peak_mem_mb,
        "weights_mb": subject.weights_mb,
        "amp": spec.amp,
        "channels_last": spec.channels_last,
        "runtime": spec.runtime,
        "kernels": subject.kernels,
        "implementation": subject.implementation,
        "samples": len(merged.times),
        "rounds": spec.rounds,
        "min_run_time": spec.min_run_time,
        "warmup_s": subject.warmup_s,
        "compile_s": subject.compile_s,
        "optimizer": OPTIMIZER if spec.mode == "train" else None,
        "aux_losses": subject.aux_losses if spec.mode == "train" else [],
        "mem_method": subject.mem_method,
        "note": "; ".join(subject.notes) or None,
        **common,
    }


def benchmark_models(
    names: "Sequence[str | nn.Module]",
    *,
    baseline: "str | nn.Module | None" = None,
    mode: str = "infer",
    batch: int = 32,
    input_size: tuple[int, int] | None = None,
    device: str = "cpu",
    threads: int | None = None,
    amp: str = "none",
    channels_last: bool = False,
    runtime: str = "eager",
    min_run_time: float = 1.0,
    rounds: int = 3,
    progress: ProgressFn | None = None,
    replace: "Mapping[str, str] | None" = None,
    kernels: str = "fused",
) -> list[dict]:
    """``run_benchmark`` with the spec given as keywords (what the CLI and the suite runner call).

    ``names``: model names / references or ``nn.Module`` objects; a module needs ``input_size``.
    ``replace``: blocks put into the named models (not the baseline), see ``run_benchmark``.
    ``runtime``: eager, compile or onnxruntime (``strabench.measure.runtimes``), for every model.
    ``kernels``: fused, stock or both (``KERNEL_CHOICES``); every row names its ``implementation``.
    """
    spec = BenchSpec(
        mode=mode,
        batch=batch,
        input_size=input_size,
        device=device,
        threads=threads,
        amp=amp,
        channels_last=channels_last,
        runtime=runtime,
        kernels=kernels,
        min_run_time=min_run_time,
        rounds=rounds,
    )
    return run_benchmark(spec, names, baseline=baseline, progress=progress, replace=replace)


def spec_dict(spec: BenchSpec) -> dict:
    """The spec as plain data (for env/config files)."""
    data = asdict(spec)
    data["threads"] = spec.num_threads
    return data

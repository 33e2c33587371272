"""The memory one benchmarked step needs: CUDA's allocator peak, or the process's RSS growth on CPU.

``peak_step_memory`` runs one extra, untimed step (``strabench.measure.latency`` calls it between
warm-up and the timed rounds): after warm-up glibc keeps freed pages, so RSS would hardly grow
during the timed runs, and trimming inside them would add page faults to the timing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["peak_step_memory"]


def _read_status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _malloc_trim() -> None:
    """Hand glibc's freed heap pages back to the OS, so RSS growth shows what a step needs."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: growth may then read low
        pass


def _reset_hwm() -> int | None:
    """Reset VmHWM to the current RSS (Linux >= 4.0) and return that RSS in bytes; None if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _read_status_kb("VmRSS") * 1024
    except OSError:
        return None


@contextlib.contextmanager
def _rss_peak(method: str = "auto") -> Iterator[dict]:
    """Peak RSS growth over the block: VmHWM after a reset (exact), else a psutil sampling thread."""
    result: dict = {}
    _malloc_trim()
    before = _reset_hwm() if method in ("auto", "vmhwm") else None
    if before is None and method == "vmhwm":
        raise OSError("cannot reset VmHWM via /proc/self/clear_refs")
    if before is not None:
        yield result
        result["peak"] = _read_status_kb("VmHWM") * 1024 - before
        result["method"] = "cpu: peak RSS growth over one untimed step (VmHWM reset via /proc/self/clear_refs, after malloc_trim)"
        return
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
    result["peak"] = max(peak[0], process.memory_info().rss) - before
    result["method"] = "cpu: peak RSS growth over one untimed step (psutil sampled every 1 ms, after malloc_trim)"


def peak_step_memory(step: Callable[[], None], device: str, *, cpu_method: str = "auto") -> tuple[float, str]:
    """Memory one step needs on top of what is already resident (weights, optimizer state, inputs), in MB.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus ``memory_allocated``
    before. CPU: process RSS growth during the step. It is an untimed extra step because
    after warm-up glibc keeps freed pages, so RSS would hardly grow during the timed runs, and
    trimming inside them would add page faults to the timing. Several models share one
    process, so both numbers exclude other models' weights by construction. ``cpu_method``:
    "auto" (VmHWM if the kernel allows resetting it, else psutil), "vmhwm" or "psutil".
    """
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20, "cuda: max_memory_allocated - memory_allocated before one untimed step"
    with _rss_peak(cpu_method) as result:
        step()
    return max(result["peak"], 0) / 2**20, result["method"]

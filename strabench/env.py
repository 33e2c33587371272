"""The environment a run happened in (``env.json``) and the checks behind ``strabench doctor``."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_allocator: str | None = None


def configure_allocator() -> str:
    """Keep freed tensor memory in the process instead of unmapping it after every op (glibc, CPU).

    glibc serves every allocation above its mmap threshold (a few MiB: every activation of a
    ResNet batch) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each step
    page-faults its whole working set in again: measured here on 2 cores, ResNet-50 inference at
    batch 32 spent 35 s of 51 s in the kernel and ran 1.9x slower than with the heap kept.
    This disables mmap for allocations and never trims the heap: the usual fix
    (PyTorch's CPU tuning guide suggests jemalloc/tcmalloc for the same reason), applied to the
    baseline and the candidates alike. ``STRABENCH_MALLOC=system`` leaves glibc's defaults.
    Idempotent; returns what is in force (it is recorded with benchmark rows and runs).
    """
    global _allocator
    if _allocator is not None:
        return _allocator
    if os.environ.get("STRABENCH_MALLOC", "").lower() == "system":
        _allocator = "system default (STRABENCH_MALLOC=system)"
        return _allocator
    _allocator = "system default"
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            if libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1:
                _allocator = "glibc, heap kept (mmap off, no trim)"
        except (OSError, AttributeError, ctypes.ArgumentError):  # pragma: no cover - no mallopt
            pass
    return _allocator


def _git(*args: str, cwd: Path | None = None) -> str | None:
    """``git ARGS`` in the source checkout; stdout, or None when git fails or is missing."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout strabench runs from; None where unknown."""
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if not commit:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return commit, (bool(status) if status is not None else None)


def calm_threads() -> None:
    """On a machine others are already using, let idle OpenMP threads sleep instead of spinning.

    Must run before torch starts its thread pool; a user's own ``OMP_WAIT_POLICY`` always wins.
    Measured on a 2-core VM (ResNet-50-StRA at 64x32): with another job running, 2 spinning
    threads trained at 7-10 img/s and 2 passive ones at 30 img/s (every parallel region waited
    for a thread the OS had descheduled); on the idle machine passive threads cost ~20 %
    (ResNet-50, quick ReID profile: 44 vs 54 img/s). So: passive only when the 1-minute load
    average is already at least half the cores.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return
    if load >= 0.5 * (os.cpu_count() or 1):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def allocator_in_use(device_type: str) -> str:
    """What serves tensor memory on ``device_type`` ("cpu", "cuda", ...): recorded with results."""
    return configure_allocator() if device_type == "cpu" else f"torch {device_type.upper()} caching allocator"


def git_commit(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with ``-dirty`` when it has local changes), or None outside git."""
    commit, dirty = git_state(cwd)
    return None if commit is None else commit + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(device: str | None = None) -> dict[str, Any]:
    """Versions, hardware and threads: what ``env.json`` records next to every run."""
    import torch

    from strabench import __version__

    info: dict[str, Any] = {
        "strabench": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "device": device,
        "allocator": _allocator or "system default",
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - a dependency
        info["torchvision"] = None
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def doctor_checks(results_dir: Path) -> list[tuple[str, str, str]]:
    """(check, status ok|warn|fail, detail) rows for ``strabench doctor``."""
    from importlib import metadata

    from strabench.data.synthetic import cache_root

    rows: list[tuple[str, str, str]] = []
    for package in ("torch", "torchvision", "typer", "rich", "fvcore", "ptflops", "pandas", "matplotlib", "numpy", "pillow"):
        try:
            rows.append((package, "ok", metadata.version(package)))
        except metadata.PackageNotFoundError:
            rows.append((package, "fail", "not installed (pip install -e .)"))
    import torch

    rows.append(("python", "ok", sys.version.split()[0]))
    rows.append(("cpu", "ok", f"{cpu_model()} ({os.cpu_count()} cores)"))
    rows.append(("torch threads", "ok", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("cuda", "ok", f"{torch.version.cuda}: {names}"))
    else:
        rows.append(("cuda", "warn", "no GPU visible: everything runs on CPU (--device cuda will be refused)"))
    rows.append(("distributed", "ok" if torch.distributed.is_available() else "warn", f"gloo={torch.distributed.is_gloo_available()} nccl={torch.distributed.is_nccl_available()}"))
    cache = cache_root()
    rows.append(("dataset cache", *_writable(cache)))
    rows.append(("results dir", *_writable(results_dir)))
    free = shutil.disk_usage(_existing_parent(results_dir)).free / 2**30
    rows.append(("free disk", "ok" if free > 2 else "warn", f"{free:.1f} GiB under {_existing_parent(results_dir)}"))
    commit = git_commit()
    rows.append(("git commit", "ok" if commit and not commit.endswith("-dirty") else "warn", commit or "not a git checkout (env.json will say so)"))
    return rows


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def _writable(path: Path) -> tuple[str, str]:
    if path.exists() and not path.is_dir():
        return "fail", f"{path} exists and is not a directory"
    parent = path if path.exists() else _existing_parent(path)
    if not os.access(parent, os.W_OK):
        return "fail", f"{path} is not writable"
    return "ok", f"{path}" + ("" if path.exists() else " (will be created)")

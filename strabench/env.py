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
_SYSTEM_ALLOCATOR = "system default"
#: What ``configure_process`` did to this process's allocator. A record of a process-wide fact
#: (glibc has no call to read the setting back), written only by that one explicit call.
_allocator_record: dict[str, str] = {}


def _keep_heap() -> str:
    """Keep freed tensor memory in the process instead of unmapping it after every op (glibc, CPU).

    glibc serves every allocation above its mmap threshold (a few MiB: every activation of a
    ResNet batch) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each step
    page-faults its whole working set in again: measured here on 2 cores, ResNet-50 inference at
    batch 32 spent 35 s of 51 s in the kernel and ran 1.9x slower than with the heap kept.
    This disables mmap for allocations and never trims the heap: the usual fix
    (PyTorch's CPU tuning guide suggests jemalloc/tcmalloc for the same reason), applied to the
    baseline and the candidates alike. ``STRABENCH_MALLOC=system`` leaves glibc's defaults.
    """
    if os.environ.get("STRABENCH_MALLOC", "").lower() == "system":
        return f"{_SYSTEM_ALLOCATOR} (STRABENCH_MALLOC=system)"
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            if libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1:
                return "glibc, heap kept (mmap off, no trim)"
        except (OSError, AttributeError, ctypes.ArgumentError):  # pragma: no cover - no mallopt
            pass
    return _SYSTEM_ALLOCATOR


def _calm_threads() -> None:
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


def configure_process(*, allocator: bool = True, calm_threads: bool = True) -> dict[str, str]:
    """The one call that changes process-wide settings the way ``strabench`` commands do.

    The library never does this by itself (a ``Trainer`` or ``run_benchmark`` leaves the
    process as it found it); the CLI entry points call it first thing, and API users who want
    the CLI's numbers call it once at start-up, before torch starts its thread pool:
    ``allocator`` keeps freed memory on glibc's heap (``STRABENCH_MALLOC=system`` opts out),
    ``calm_threads`` makes idle OpenMP threads sleep when the machine is already loaded (a
    user's ``OMP_WAIT_POLICY`` wins). Idempotent. Returns ``process_settings("cpu")``, the
    record every env.json and bench row carries.
    """
    if allocator and "cpu" not in _allocator_record:
        _allocator_record["cpu"] = _keep_heap()
    if calm_threads:
        _calm_threads()
    return process_settings("cpu")


def process_settings(device_type: str = "cpu") -> dict[str, str]:
    """What serves tensor memory on ``device_type`` and how idle OpenMP threads wait: a query only.

    Recorded with every run (env.json) and bench row, since both change timings several-fold.
    """
    if device_type == "cpu":
        allocator = _allocator_record.get("cpu", _SYSTEM_ALLOCATOR)
    else:
        allocator = f"torch {device_type.upper()} caching allocator"
    policy = os.environ.get("OMP_WAIT_POLICY")
    return {"allocator": allocator, "omp_wait_policy": policy.upper() if policy else "unset (OpenMP runtime default)"}


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


def describe_environment(device: "str | None" = None) -> dict[str, Any]:
    """Versions, hardware, threads, allocator and OpenMP wait policy: the one description of the
    machine a result came from (env.json of every run, every bench row, the benchmarks' JSON)."""
    import torch

    from strabench import __version__

    dev = torch.device(device) if device else torch.device("cpu")
    commit, dirty = git_state()
    info: dict[str, Any] = {
        "strabench": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": _version_of("torchvision"),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        **process_settings(dev.type),
        "local_attention_kernel": _local_attention_kernel(dev.type),
    }
    return info


def local_attention_kernel(device_type: str) -> str:
    """How StRA's local weighting runs here (the fused C kernel changes its speed several-fold,
    and its float rounding: part of a run's code identity, ``strabench.provenance``)."""
    return _local_attention_kernel(device_type)


def _local_attention_kernel(device_type: str) -> str:
    """How StRA's local weighting runs here (the fused C kernel changes its speed several-fold)."""
    if device_type != "cpu":
        return f"op-per-pass (on {device_type})"
    from strabench.layers._local_kernel import status

    return status()


def _version_of(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return None


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
    kernel = _local_attention_kernel("cpu")
    rows.append(("local attention kernel", "ok" if kernel.startswith("fused C kernel") else "warn", kernel))
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

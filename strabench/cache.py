"""Where strabench keeps what it can rebuild: generated datasets and compiled kernels.

A leaf module (standard library only), so the layers, the data generators and the environment
report find the cache without importing one another.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "kernel_cache_dir"]


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """``cache_dir``, else ``$STRABENCH_CACHE``, else ``$XDG_CACHE_HOME/strabench``, else ``~/.cache/strabench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("STRABENCH_CACHE"):
        return Path(os.environ["STRABENCH_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "strabench"
    return Path.home() / ".cache" / "strabench"


def kernel_cache_dir() -> Path:
    """Where StRA's compiled kernels go: ``$STRABENCH_KERNEL_CACHE``, else ``<cache_root()>/kernels``.

    Its own setting, so that datasets and kernels can live apart: the datasets on a scratch disk,
    the kernels (one small build per compiler and source) where every run of the user finds them."""
    if os.environ.get("STRABENCH_KERNEL_CACHE"):
        return Path(os.environ["STRABENCH_KERNEL_CACHE"]).expanduser()
    return cache_root() / "kernels"

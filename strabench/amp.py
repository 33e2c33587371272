"""Mixed precision, set up one way for training, evaluation and benchmarks.

``--amp`` takes ``auto`` (bf16, or fp16 where the GPU has no bf16, on CUDA; off on CPU), ``off``
(``none`` is the same), ``bf16`` or ``fp16`` (CUDA only: CPU autocast has no fp16 kernels
worth timing, and no GradScaler).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from strabench.errors import ConfigError

AMP_MODES = ("auto", "off", "none", "bf16", "fp16")


def amp_dtype(mode: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``--amp MODE`` on ``device`` (None = full precision)."""
    device_type = torch.device(device).type
    if mode not in AMP_MODES:
        raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    if mode in ("off", "none") or (mode == "auto" and device_type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device_type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (on CPU use --amp bf16 or off)")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def autocast_factory(device: torch.device | str, dtype: torch.dtype | None) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A callable returning a fresh autocast context for each use (a no-op one at full precision)."""
    if dtype is None:
        return contextlib.nullcontext
    device_type = torch.device(device).type
    return lambda: torch.autocast(device_type=device_type, dtype=dtype)

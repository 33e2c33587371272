"""StRA's kernels under AddressSanitizer and UBSan: every operator, forward and backward, both
vector widths, float32 and float64, awkward shapes (vector tails, 1x1 maps, K = 1 and 5), in a
process with the sanitizer runtime preloaded and a sanitized build of the kernels. A read or
write out of bounds, a use after free or undefined behaviour ends it with the sanitizer's report.
``make sanitize`` runs the kernel test files the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strabench.layers import _kernel_cache

REPO = Path(__file__).resolve().parents[2]

SMOKE = r"""
import torch
from strabench.layers import _local_kernel, ops
from strabench.layers.kernels import fuse_for_inference
from strabench.layers.local_attention import LocalAttention
from strabench.layers.mode_attention import ModeAttention
assert "AddressSanitizer" in _local_kernel.status(), _local_kernel.status()
torch.manual_seed(0)
for width in (64, 32):
    _local_kernel.vector_bytes(width)
    for dtype in (torch.float32, torch.float64):
        for (b, c, g, k, h, w) in [(2, 24, 4, 3, 5, 7), (2, 16, 8, 1, 1, 1), (3, 40, 4, 5, 7, 9), (2, 64, 8, 3, 16, 8)]:
            la = LocalAttention(c, groups=g, kernel_size=k).to(dtype)
            x = torch.randn(b, c, h, w, dtype=dtype, requires_grad=True)
            la(x).sum().backward()
            xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
            la(xc).sum().backward()
            mode = ModeAttention(c, groups=g).to(dtype)
            mode(x).sum().backward()
            la.eval(), mode.eval()
            fuse_for_inference(la), fuse_for_inference(mode)
            with torch.no_grad():
                mode(la(x))
print("clean")
"""


def _runtime(name: str, cc: str) -> str | None:
    """The compiler's sanitizer (or C++) runtime library, or None when it has none."""
    out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True, timeout=30, check=False)
    path = out.stdout.strip()
    return path if out.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.requires_kernels
def test_the_kernels_run_clean_under_address_and_ub_sanitizers() -> None:
    cc = _kernel_cache.compiler()
    asan, stdcxx = _runtime("libasan.so", cc), _runtime("libstdc++.so", cc)
    if asan is None or stdcxx is None:
        pytest.skip(f"{cc} has no AddressSanitizer runtime here")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STRABENCH_KERNEL_SANITIZE": "1", "STRABENCH_FUSED_KERNEL": "1",
           "LD_PRELOAD": f"{asan} {stdcxx}", "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", SMOKE], capture_output=True, text=True, timeout=900, env=env)
    report = "\n".join(line for line in out.stderr.splitlines() if "ERROR" in line or "runtime error" in line)
    assert out.returncode == 0 and out.stdout.strip() == "clean", (report or out.stderr[-3000:])
    assert "runtime error" not in out.stderr and "AddressSanitizer" not in out.stderr, report

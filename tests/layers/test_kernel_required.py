"""Where a C compiler is, StRA's kernels must build and load: a broken build fails the test suite
instead of passing as "no kernels here" (the other kernel tests would only be skipped)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strabench.layers import _kernel_cache, _local_kernel

REPO = Path(__file__).resolve().parents[2]


def test_the_kernels_are_built_and_loaded_where_a_compiler_is() -> None:
    if os.environ.get("STRABENCH_FUSED_KERNEL", "1").strip().lower() in ("0", "off", "false", "no"):
        pytest.skip(f"kernels switched off on purpose: {_local_kernel.status()}")
    if _kernel_cache.compiler() is None:
        pytest.skip("no C compiler on this machine: the blocks run as plain torch ops")
    assert _local_kernel.available(), _local_kernel.status()


def _build_command(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "STRABENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO), **env}
    full.pop("STRABENCH_FUSED_KERNEL", None)
    full.pop("STRABENCH_KERNEL_CACHE", None)  # built under that cache, not into the one the other tests use
    return subprocess.run([sys.executable, "-m", "strabench.layers.build_kernels"], capture_output=True, text=True,
                          timeout=600, env=full, cwd=tmp_path)


def test_the_build_step_fails_where_a_compiler_cannot_build_the_kernels(tmp_path: Path) -> None:
    broken = tmp_path / "cc"
    broken.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "broken cc 1.0"; exit 0; fi\n'
                      'echo "error: this compiler is broken" >&2; exit 1\n')
    broken.chmod(0o755)
    out = _build_command(tmp_path, CC=str(broken))
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        "strabench kernels: op-per-pass: fused kernel unavailable: broken cc 1.0 could not build the kernels: "
        "error: this compiler is broken")


def test_the_build_step_passes_without_a_compiler(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    out = _build_command(tmp_path, CC="", PATH=str(bin_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no C compiler found" in out.stdout

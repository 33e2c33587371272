"""A regular (non-editable) install carries its data: the complexity table (`strabench list` shows
no '?') and the source of the fused local-attention kernel (which it builds on first use)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_its_data_files(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("strabench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "strabench/models/complexity.json" in names
    assert "strabench/layers/_local_kernel.c" in names
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "250"}
    listed = subprocess.run(
        [sys.executable, "-c", "import strabench, sys; assert 'site' in strabench.__file__, strabench.__file__; "
         "from strabench.cli import main; sys.argv = ['strabench', 'list', 'resnet50*']; main()"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "resnet50_stra" in listed.stdout and "?" not in listed.stdout
    kernel = subprocess.run(
        [sys.executable, "-c", "from strabench.layers import _local_kernel as k; "
         "assert 'site' in k.__file__, k.__file__; print(k.status())"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        # the session's kernel cache: the installed C source is the repository's, byte for byte,
        # so its verified build is found there (a cache of its own would compile it again, ~17 s)
        env={**env, "STRABENCH_FUSED_KERNEL": "1"},
    )
    assert kernel.returncode == 0, kernel.stderr[-2000:]
    from strabench.layers._kernel_cache import compiler as _compiler

    want = "fused C kernel" if _compiler() else "op-per-pass: fused kernel unavailable: no C compiler"
    assert kernel.stdout.strip().startswith(want), kernel.stdout

"""A regular (non-editable) install carries the complexity table: `strabench list` shows no '?'."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_complexity_json_and_list_shows_every_figure(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("strabench-*.whl"))
    assert "strabench/models/complexity.json" in zipfile.ZipFile(wheel).namelist()
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

"""`strabench list` builds no model: every number comes from the shipped complexity table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.registry import list_models


def test_list_builds_no_model(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from strabench import registry
    from strabench.measure import golden

    def refuse(*args, **kwargs):
        raise AssertionError(f"`list` built or counted a model: {args}")

    monkeypatch.setattr(golden, "compute_entry", refuse)
    monkeypatch.setattr(registry, "create_model", refuse)
    monkeypatch.setenv("STRABENCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list_models()
    assert all(isinstance(r["params"], int) and isinstance(r["macs_paper"], int) for r in rows)
    assert not (tmp_path / "cache").exists(), "nothing to cache for built-in models"


def _seconds(*args: str, cache) -> float:
    start = time.perf_counter()
    env = {**os.environ, "STRABENCH_CACHE": str(cache)}  # empty: no entry computed by an earlier call helps
    done = subprocess.run([sys.executable, "-m", "strabench", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


def test_list_takes_about_as_long_as_starting_the_cli(tmp_path) -> None:
    """Loose on purpose (start-up is noisy on a shared machine): building one model to count it
    took ~9 s on an idle machine, so anything within a few seconds of `--version` is fine."""
    version = min(_seconds("--version", cache=tmp_path / f"v{i}") for i in range(2))
    listing = min(_seconds("list", cache=tmp_path / f"l{i}") for i in range(2))
    assert listing < version + 3.0, f"list {listing:.1f} s vs --version {version:.1f} s"

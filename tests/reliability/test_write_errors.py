"""Guarantee 8 -- disk full (or any write error) never costs the last good checkpoint.

`strabench train` runs in-process with a fault injected into the SECOND checkpoint save (epoch
2) at each step of the save sequence (strabench.train.checkpoint's docstring): writing the
temp file, writing the previous checkpoint's checksum, rotating checkpoint.pt -> prev, moving
the temp file in, writing the new checksum. Each time: one error line (exit 2) saying what
failed, no temp file left, a verified epoch-1 checkpoint still found by ``load_latest_good``,
and re-running the same command (disk freed) finishes with exactly the uninterrupted numbers.
Write errors outside checkpoints (results.csv, metrics.jsonl) must be one line too.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import TINY_TRAIN_ARGS, assert_error_reported, invoke, no_exception, read_csv, suite_text, temp_files

MODEL = "mobilenetv2_100"


def train_argv(out: Path) -> list[str]:
    return ["train", MODEL, *TINY_TRAIN_ARGS, "--out", str(out)]


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference") / "run"
    result = invoke(train_argv(out))
    no_exception(result)
    assert result.exit_code == 0, result.stderr
    return json.loads((out / "result.json").read_text())


def _disk_full(path: object = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class _NthCall:
    """Wrap ``real`` so that its ``n``-th call matching ``match`` raises instead."""

    def __init__(self, real: Callable, match: Callable[..., bool], n: int, error: Callable[..., OSError]) -> None:
        self.real, self.match, self.n, self.error = real, match, n, error
        self.seen = 0

    def __call__(self, *args, **kwargs):
        if self.match(*args, **kwargs):
            self.seen += 1
            if self.seen == self.n:
                raise self.error(*args)
        return self.real(*args, **kwargs)


def _name(path: object) -> str:
    return Path(os.fspath(path)).name if isinstance(path, (str, os.PathLike)) else ""


def _fault_temp_write(mp: pytest.MonkeyPatch) -> None:
    import torch

    mp.setattr(torch, "save", _NthCall(torch.save, lambda *a, **k: True, 2, lambda *a: _disk_full("checkpoint temp file")))


def _fault_prev_sidecar(mp: pytest.MonkeyPatch) -> None:
    from strabench.train import checkpoint

    mp.setattr(checkpoint, "atomic_write_json", _NthCall(
        checkpoint.atomic_write_json, lambda p, *a: _name(p) == "checkpoint.prev.pt.sha256", 1, lambda p, *a: _disk_full(p)))


def _fault_rotate(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(os, "replace", _NthCall(
        os.replace, lambda src, dst, *a, **k: _name(dst) == "checkpoint.prev.pt", 1,
        lambda src, dst, *a: OSError(errno.EIO, os.strerror(errno.EIO), str(dst))))


def _fault_swap_in(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(os, "replace", _NthCall(
        os.replace, lambda src, dst, *a, **k: _name(dst) == "checkpoint.pt", 2, lambda src, dst, *a: _disk_full(dst)))


def _fault_new_sidecar(mp: pytest.MonkeyPatch) -> None:
    from strabench.train import checkpoint

    mp.setattr(checkpoint, "atomic_write_json", _NthCall(
        checkpoint.atomic_write_json, lambda p, *a: _name(p) == "checkpoint.pt.sha256", 2, lambda p, *a: _disk_full(p)))


FAULTS = {
    "writing_temp_file": (_fault_temp_write, "no space left on device"),
    "writing_prev_checksum": (_fault_prev_sidecar, "no space left on device"),
    "rotating_to_prev": (_fault_rotate, "nput/output error"),
    "moving_temp_in": (_fault_swap_in, "no space left on device"),
    "writing_new_checksum": (_fault_new_sidecar, "no space left on device"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_write_error_during_checkpoint_save_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference_result: dict, fault: str
) -> None:
    import torch

    from strabench.train.checkpoint import load_latest_good

    inject, message = FAULTS[fault]
    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        inject(mp)
        result = invoke(train_argv(run))
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "checkpoint", message)

    assert temp_files(run) == [], "a failed save left its temp file behind"
    assert not (run / "result.json").exists()
    state, used, _warnings = load_latest_good(run, expected_config_hash=reference_result["config_hash"])
    assert state["epoch"] == 1, f"{used} holds epoch {state['epoch']}"
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())

    again = invoke(train_argv(run))  # the disk has room again: the same command resumes
    no_exception(again)
    assert again.exit_code == 0, again.stderr
    finished = json.loads((run / "result.json").read_text())
    assert finished["metrics"] == reference_result["metrics"]


def test_disk_full_while_writing_results_csv_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """results.csv is rewritten after every run; a failed rewrite must leave the previous complete
    file and end with one line naming it (not a traceback)."""
    from strabench import io

    suite = tmp_path / "tiny.toml"
    suite.write_text(suite_text(variants=(("mnv2", MODEL, ""),)).replace("accuracy = true", "accuracy = false"))
    out = tmp_path / "results"
    monkeypatch.setattr(io, "write_temp_sibling", _NthCall(
        io.write_temp_sibling, lambda p, *a: _name(p) == "results.csv", 2, lambda p, *a: _disk_full(p)))
    result = invoke(["run", suite, "--out", out])
    no_exception(result)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert_error_reported(result.stderr, "results.csv", "no space left on device")
    assert [r["status"] for r in read_csv(out / "tiny" / "results.csv")] == ["pending"]  # the previous version
    assert temp_files(out) == []
    assert not (out / "tiny" / ".lock").exists()


@pytest.mark.slow
def test_disk_full_while_appending_metrics_log_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.train import engine

    monkeypatch.setattr(engine, "append_jsonl", _NthCall(
        engine.append_jsonl, lambda p, *a: _name(p) == "metrics.jsonl", 1, lambda p, *a: _disk_full(p)))
    run = tmp_path / "run"
    result = invoke(train_argv(run))
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "metrics.jsonl", "no space left on device")

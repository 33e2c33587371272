"""Guarantee 8, with the operating system's own failures (no mocked exception).

A real full filesystem makes ``torch.save`` raise RuntimeError("unexpected pos ..."), not
OSError, so the checkpoint save printed a traceback. Here the disk really fills:

* a small tmpfs (mounted by the test; skipped, with the reason, where mounting is not
  allowed) that holds two checkpoints but not a third file: the third epoch's save fails with
  ENOSPC, the command ends with one line naming the checkpoint and "no space left on device",
  the epoch-2 checkpoint is still verified, and once the disk grows the same command finishes
  with exactly the numbers of an uninterrupted run;
* ``RLIMIT_FSIZE`` in a child process (SIGXFSZ ignored, so ``write`` fails with EFBIG) for
  `train` and for a suite `run`, which must stop (not mark the run failed and go on).
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from .helpers import TINY_TRAIN_ARGS, assert_error_reported, child_env, strabench_argv, temp_files, write_suite

MODEL = "mobilenetv2_100"
CHECKPOINT_MB = 35  # a MobileNetV2 checkpoint of the tiny run (weights + Adam state), ~35.0 MB


def _train(out: Path, epochs: int, *, cwd: Path, preexec=None) -> subprocess.CompletedProcess[str]:
    """The tiny run, with the test session's dataset and kernel cache (a cache of its own would
    build StRA's kernels again, ~17 s, in every call)."""
    args = [*TINY_TRAIN_ARGS]
    args[args.index("--epochs") + 1] = str(epochs)
    return subprocess.run(strabench_argv("train", MODEL, *args, "--out", out), cwd=cwd, env=child_env(), capture_output=True,
                          text=True, timeout=400, start_new_session=True, preexec_fn=preexec)


def _mount_tmpfs(where: Path, megabytes: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", f"strabench-test-{uuid.uuid4().hex[:6]}", str(where)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): the RLIMIT_FSIZE tests cover real write failures")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the RLIMIT_FSIZE tests cover real write failures")


@pytest.mark.slow
def test_real_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    import torch

    from strabench.train.checkpoint import load_latest_good

    reference = _train(tmp_path / "reference", 3, cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    expected = json.loads((tmp_path / "reference" / "result.json").read_text())

    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 2 * CHECKPOINT_MB + 8)  # two checkpoints and the small files; not a third
    try:
        full = _train(disk / "run", 3, cwd=tmp_path)
        assert full.returncode == 2, full.stdout + full.stderr
        line = assert_error_reported(full.stderr, "checkpoint", "no space left on device")
        assert str(disk / "run") in line
        assert temp_files(disk) == [], "a failed save left its temp file on the full disk"
        assert not (disk / "run" / "result.json").exists()
        state, _used, _warnings = load_latest_good(disk / "run", expected_config_hash=expected["config_hash"])
        assert state["epoch"] == 2
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())

        grown = subprocess.run(["mount", "-o", f"remount,size={4 * CHECKPOINT_MB}m", str(disk)], capture_output=True, text=True)
        assert grown.returncode == 0, grown.stderr
        again = _train(disk / "run", 3, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert json.loads((disk / "run" / "result.json").read_text())["metrics"] == expected["metrics"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return apply


@pytest.mark.slow
def test_file_size_limit_on_the_checkpoint_is_one_line_from_train(tmp_path: Path) -> None:
    result = _train(tmp_path / "run", 1, cwd=tmp_path, preexec=_file_size_limit(8 * 2**20))
    assert result.returncode == 2, result.stdout + result.stderr
    line = assert_error_reported(result.stderr, "checkpoint", "File too large")
    assert str(tmp_path / "run") in line
    assert temp_files(tmp_path / "run") == []


@pytest.mark.slow
def test_file_size_limit_stops_a_suite_instead_of_failing_every_run(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, epochs=1)
    result = subprocess.run(strabench_argv("run", suite, "--out", tmp_path / "results"), cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=400, start_new_session=True,
                            preexec_fn=_file_size_limit(8 * 2**20))
    assert result.returncode == 2, result.stdout + result.stderr
    assert_error_reported(result.stderr, "checkpoint", "File too large")
    rows = (tmp_path / "results" / "tiny" / "results.csv").read_text().splitlines()
    assert all(",failed," not in row for row in rows), rows  # stopped, resumable: not recorded as failed
    assert temp_files(tmp_path / "results") == []
    assert not (tmp_path / "results" / "tiny" / ".lock").exists()

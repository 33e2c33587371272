"""Guarantee 7 -- one suite directory, one writer; a dead writer's lock does not block forever.

A real `strabench run` subprocess trains; a second `strabench run` of the same suite into the
same directory must refuse with one line naming the lock holder (exit 2) and change nothing.
Then the first is SIGKILLed while holding the lock: its lock file stays behind, and the next
run must detect that the owner is dead, take the lock over (saying so) and finish the suite.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest

from .helpers import Child, assert_one_line_error, invoke, no_exception, read_csv, write_suite

VARIANTS = (("mnv2", "mobilenetv2_100", ""),)
EPOCHS = 8  # the first run must still be training when the second arrives, on a fast machine too


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import torch

    torch.set_num_threads(1)
    suite = write_suite(tmp_path, variants=VARIANTS, epochs=EPOCHS)  # long enough to overlap
    out = tmp_path / "results"
    warm = invoke(["run", suite, "--out", out, "--dry-run"])  # imports done before the race starts
    assert warm.exit_code == 0, warm.stdout + warm.stderr

    first = Child("run", suite, "--out", out, cwd=tmp_path)
    try:
        assert first.wait_for(": epoch 1:", timeout=180), first.output
        lock = out / "tiny" / ".lock"
        assert json.loads(lock.read_text())["pid"] == first.proc.pid

        second = invoke(["run", suite, "--out", out])
        no_exception(second)
        assert first.proc.poll() is None, "the first run ended before the second tried: the test raced nothing"
        assert second.exit_code == 2, second.stdout + second.stderr
        assert_one_line_error(second.stderr, f"pid {first.proc.pid}", str(out / "tiny"), "locked")
        assert json.loads(lock.read_text())["pid"] == first.proc.pid  # the refused run left it alone

        first.kill(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
    finally:
        first.kill(signal.SIGKILL)
    assert lock.exists() and json.loads(lock.read_text())["pid"] == first.proc.pid  # stale now

    with caplog.at_level(logging.WARNING):
        third = invoke(["run", suite, "--out", out])
    no_exception(third)
    assert third.exit_code == 0, third.stdout + third.stderr
    assert "stale lock" in caplog.text + third.stderr and str(first.proc.pid) in caplog.text + third.stderr
    assert [r["status"] for r in read_csv(out / "tiny" / "results.csv")] == ["finished"]
    assert not list(out.rglob(".lock")), "the lock was not released"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_shard_started_beside_a_full_run_does_not_mark_its_runs_failed(tmp_path: Path) -> None:
    """`--shard` takes its own lock, so it can start while an unsharded run of the same suite
    trains. It must then neither train the same run nor record that run as failed (a LockError
    from the run's own lock is "in use", not a failure of the run)."""
    import torch

    torch.set_num_threads(1)
    suite = write_suite(tmp_path, variants=VARIANTS, epochs=EPOCHS)
    out = tmp_path / "results"
    warm = invoke(["run", suite, "--out", out, "--dry-run"])
    assert warm.exit_code == 0
    first = Child("run", suite, "--out", out, cwd=tmp_path)
    try:
        assert first.wait_for(": epoch 1:", timeout=180), first.output
        run_dir = next(p for p in (out / "tiny").iterdir() if p.is_dir() and not p.name.startswith("."))
        shard = invoke(["run", suite, "--out", out, "--shard", "1/1"])
        no_exception(shard)
        still_training = first.proc.poll() is None
        result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").exists() else None
        rc = first.wait(timeout=240)
    finally:
        first.kill(signal.SIGKILL)
    assert still_training, "the full run ended before the shard reached its run: the test raced nothing"
    assert rc == 0, first.output
    assert result is None or result.get("status") != "failed", f"the shard recorded the busy run as failed: {result}"
    assert shard.exit_code != 0, "the shard did not train the run, so it must not report success"
    assert f"pid {first.proc.pid}" in " ".join((shard.stdout + shard.stderr).split()), shard.stdout + shard.stderr
    final = json.loads((run_dir / "result.json").read_text())
    assert final["status"] == "finished"  # the full run's result, not overwritten by the shard


def test_lock_left_empty_by_a_kill_during_its_creation_does_not_block_the_next_run(tmp_path: Path) -> None:
    """SIGKILL between creating the lock file and writing its record leaves an empty .lock. The
    re-run a user (or a job scheduler) starts right away must not be refused because of it."""
    from .helpers import suite_text

    suite = tmp_path / "tiny.toml"
    suite.write_text(suite_text(variants=VARIANTS).replace("accuracy = true", "accuracy = false"))
    out = tmp_path / "results"
    (out / "tiny").mkdir(parents=True)
    (out / "tiny" / ".lock").write_bytes(b"")  # what the kill left, a moment ago
    result = invoke(["run", suite, "--out", out])
    no_exception(result)
    assert result.exit_code == 0, result.stdout + result.stderr

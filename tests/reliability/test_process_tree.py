"""Process trees: however the `run --jobs N` parent ends, its workers end with it, and the next
`run` picks everything up without a manual step.

The parent of a real `strabench run --jobs 2` (the fake engine of tests/suite/fakes.py inside
real worker processes, one second per epoch, see fake_cli.py) is sent SIGKILL or SIGTERM while
both workers train. Afterwards no worker may still be alive (none training on under pid 1),
no run may finish later, no run's lock may stay held by a live process, and the same command
run again must exit 0 with every epoch logged exactly once. SIGTERM is a clean stop, like
Ctrl-C: the parent itself leaves every file complete, says how to resume and exits 143; one
process `run` does the same.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .fake_cli import fake_cli_argv, fake_env
from .helpers import child_env, read_csv

EPOCHS = 8
EPOCH_S = 1.0
SUITE = """\
name = "tree"
data = "synthetic_reid"
seeds = [0]
[train.quick]
epochs = {epochs}
[measure]
params = false
macs = false
accuracy = true
[[variants]]
name = "a"
model = "resnet50"
[[variants]]
name = "b"
model = "resnet50_stra"
"""


def _start(tmp_path: Path, *args: object) -> subprocess.Popen:
    """The fake `strabench run` in its own session, so that a signal to its pid alone reaches
    only the parent (a terminal's Ctrl-C would reach the whole group)."""
    return subprocess.Popen(fake_cli_argv(EPOCH_S, *args), cwd=tmp_path, env=fake_env(child_env()), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "tree.toml"
    path.write_text(SUITE.format(epochs=EPOCHS), encoding="utf-8")
    return path


def _run_dirs(suite_dir: Path) -> list[Path]:
    return sorted(p.parent for p in suite_dir.glob("*/run.json"))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _workers_training(suite_dir: Path) -> list[int]:
    """Wait until both runs have checkpointed an epoch in their worker; their pids."""
    _wait(lambda: len(_run_dirs(suite_dir)) == 2 and all((d / "checkpoint.pt").is_file() for d in _run_dirs(suite_dir)),
          timeout=120, what="both workers' first epoch")
    pids = [json.loads((d / "state.json").read_text())["pid"] for d in _run_dirs(suite_dir)]
    assert all(_alive(p) for p in pids) and os.getpid() not in pids
    return pids


def _epochs(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _assert_stopped_and_resumable(tmp_path: Path, suite: Path, out: Path, workers: list[int], jobs: int) -> None:
    suite_dir = out / "tree"
    _wait(lambda: not any(_alive(p) for p in workers), timeout=20, what="the workers to end with their parent")
    time.sleep(2 * EPOCH_S)  # an orphan would finish an epoch (or the run) by now
    for run_dir in _run_dirs(suite_dir):
        assert not (run_dir / "result.json").exists(), f"{run_dir.name} finished after its parent was gone"
        assert json.loads((run_dir / "state.json").read_text())["state"] == "interrupted"
    from strabench.locks import inspect_lock

    for lock in out.rglob(".lock"):
        _, verdict = inspect_lock(lock.parent)
        assert verdict is None or not verdict.alive, f"{lock} is still held by a live process"
    assert {r["status"] for r in read_csv(suite_dir / "results.csv")} == {"pending"}

    again = subprocess.run(fake_cli_argv(0.0, "run", suite, "--out", out, "--jobs", str(jobs)), cwd=tmp_path,
                           env=fake_env(child_env()), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["status"] for r in read_csv(suite_dir / "results.csv")] == ["finished", "finished"]
    for run_dir in _run_dirs(suite_dir):
        assert _epochs(run_dir) == list(range(1, EPOCHS + 1)), run_dir.name


@pytest.mark.timeout(240)
def test_sigkill_of_the_jobs_parent_ends_its_workers_and_the_next_run_finishes(tmp_path: Path) -> None:
    suite, out = _suite(tmp_path), tmp_path / "out"
    parent = _start(tmp_path, "run", suite, "--out", out, "--jobs", "2")
    try:
        workers = _workers_training(out / "tree")
        os.kill(parent.pid, signal.SIGKILL)  # the parent alone: nothing it could clean up itself
        assert parent.wait(timeout=30) == -signal.SIGKILL
        _assert_stopped_and_resumable(tmp_path, suite, out, workers, jobs=2)  # at once: dying workers are waited for
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        for pid in locals().get("workers", []):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(240)
def test_sigterm_of_the_jobs_parent_is_a_clean_stop_with_exit_143(tmp_path: Path) -> None:
    suite, out = _suite(tmp_path), tmp_path / "out"
    parent = _start(tmp_path, "run", suite, "--out", out, "--jobs", "2")
    try:
        workers = _workers_training(out / "tree")
        os.kill(parent.pid, signal.SIGTERM)
        output, _ = parent.communicate(timeout=90)
        assert parent.returncode == 143, output
        assert "Traceback" not in output
        resume = next(line.strip() for line in output.splitlines() if line.strip().startswith("strabench run"))
        assert shlex.split(resume)[2] == str(suite)
        assert "exit 143" in output
        assert not list(out.rglob(".lock")), "a lock outlived the clean stop"
        _assert_stopped_and_resumable(tmp_path, suite, out, workers, jobs=1)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_sigterm_of_a_one_process_run_is_a_clean_stop_with_exit_143(tmp_path: Path) -> None:
    suite, out = _suite(tmp_path), tmp_path / "out"
    run = _start(tmp_path, "run", suite, "--out", out)
    try:
        _wait(lambda: any((d / "checkpoint.pt").is_file() for d in _run_dirs(out / "tree")), timeout=120, what="the first epoch")
        os.kill(run.pid, signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 143, output
    assert "Traceback" not in output and "resume with" in output
    assert not list(out.rglob(".lock"))
    again = subprocess.run(fake_cli_argv(0.0, "run", suite, "--out", out), cwd=tmp_path, env=fake_env(child_env()),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    for run_dir in _run_dirs(out / "tree"):
        assert _epochs(run_dir) == list(range(1, EPOCHS + 1))


HOLDER = """
import os, sys, time
from strabench.locks import acquire_lock
if FORK and os.fork():  # the parent leaves once the child holds the lock: the holder is orphaned
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    os._exit(0)
with acquire_lock(sys.argv[1]):
    open(sys.argv[2], "w").close()
    time.sleep(float(sys.argv[3]))
"""


@pytest.mark.parametrize("orphaned", [True, False], ids=["orphaned_holder", "live_parent"])
def test_a_run_lock_held_by_a_dying_worker_is_waited_for_and_any_other_refused(tmp_path: Path, orphaned: bool) -> None:
    """The next run may start while a worker of the killed parent is still stopping: that holder
    (its parent gone) is waited for; a holder whose parent lives is refused at once, as before."""
    from strabench.errors import LockError
    from strabench.suite.executors import acquire_run_lock

    lock_dir, ready = tmp_path / "run-x", tmp_path / "ready"
    code = HOLDER.replace("FORK", str(orphaned))
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_dir), str(ready), "3" if orphaned else "30"], env=child_env())
    try:
        _wait(ready.exists, timeout=60, what="the holder to take the lock")
        started = time.monotonic()
        if orphaned:
            with acquire_run_lock(lock_dir, wait_s=60):
                assert time.monotonic() - started > 0.5  # it waited for the holder to let go
        else:
            with pytest.raises(LockError, match="locked by"):
                acquire_run_lock(lock_dir, wait_s=60)
            assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()

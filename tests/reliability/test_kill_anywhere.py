"""Guarantee 1 -- kill anywhere, lose nothing.

`strabench run` on a tiny real suite is SIGKILLed (whole process group) at seeded random
points -- during start-up, planning, training, checkpointing, evaluation, measuring and the
results.csv rewrite -- and re-run each time; finally it runs to completion. The final
results.csv must equal, exactly (bar wall-clock columns), the one of an uninterrupted run in
another directory; no finished run may be redone; no torn file may ever be visible (checked
after every kill: every JSON / JSONL line / results.csv parses); the only litter a kill may leave
is the hidden temp file of an atomic write, and the next run must remove it (deterministic test
at the end of this file).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from .helpers import (
    DEFAULT_VARIANTS,
    Child,
    check_consistent,
    comparable,
    invoke,
    no_exception,
    read_csv,
    suite_text,
    temp_files,
    write_suite,
)

KILLS = 10
RNG_SEED = 20240611
VARIANTS = (*DEFAULT_VARIANTS, ("mnv2_lr", "mobilenetv2_100", "train = { lr = 0.003 }"))
NUM_RUNS = len(VARIANTS)  # x seeds [0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, str]], float]:
    """results.csv of the same suite run once, uninterrupted, in its own directory; and how long
    its work took (from the "run(s) to do" line to exit), to scale the kill delays to this machine."""
    root = tmp_path_factory.mktemp("uninterrupted")
    suite = write_suite(root, variants=VARIANTS)
    child = Child("run", suite, "--out", root / "results", cwd=root)
    assert child.wait_for("run(s) to do", timeout=180), child.output
    started = time.monotonic()
    assert child.wait(timeout=300) == 0, child.output
    work_s = time.monotonic() - started
    rows = read_csv(root / "results" / "tiny" / "results.csv")
    assert [r["status"] for r in rows] == ["finished"] * NUM_RUNS
    return rows, work_s


def _digest(path: Path) -> tuple[str, int] | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _check_finished_runs_untouched(suite_dir: Path, seen: dict[Path, tuple[str, int]]) -> None:
    """Once a run's result.json says finished, it and the run's training log never change again
    (a finished run is never retrained); measure.json never changes once written."""
    for run_dir in (p for p in suite_dir.iterdir() if p.is_dir()):
        result = run_dir / "result.json"
        watched = [run_dir / "measure.json"]
        if result.is_file() and json.loads(result.read_text())["status"] == "finished":
            watched += [result, run_dir / "metrics.jsonl"]
        for path in watched:
            now = _digest(path)
            if now is None:
                continue
            if path in seen:
                assert now == seen[path], f"{path} was rewritten after its run finished"
            else:
                seen[path] = now


def _is_atomic_write_litter(path: Path) -> bool:
    """``.<name>.<12 hex>.tmp`` next to a complete ``<name>`` (strabench.io.write_temp_sibling)."""
    match = re.fullmatch(r"\.(.+)\.[0-9a-f]{12}\.tmp", path.name)
    return match is not None and (path.parent / match.group(1)).is_file()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sigkill_at_random_points_then_resume_matches_uninterrupted_run(
    tmp_path: Path, reference: tuple[list[dict[str, str]], float]
) -> None:
    reference_rows, work_s = reference
    # Kill within the first ~fifth of the remaining work, so that most of the kills land in
    # training / checkpointing / measuring before the suite completes, on slow and fast machines.
    max_delay = max(0.5, work_s / 5)
    suite = write_suite(tmp_path, variants=VARIANTS)
    out = tmp_path / "results"
    suite_dir = out / "tiny"
    rng = random.Random(RNG_SEED)
    seen: dict[Path, tuple[str, int]] = {}
    kills, log = 0, []
    for _attempt in range(3 * KILLS):
        if kills >= KILLS:
            break
        child = Child("run", suite, "--out", out, cwd=tmp_path)
        if rng.random() < 0.15:
            where = "from launch"  # start-up, planning, taking the lock ...
            delay = rng.uniform(0.5, 7.0)
        else:
            where = "after the suite started"  # training, checkpointing, evaluating, measuring, csv
            delay = rng.uniform(0.0, max_delay)
            if not child.wait_for("run(s) to do", timeout=180):
                rc = child.wait(timeout=60)
                assert rc == 0, f"run ended with {rc} before starting:\n{child.output}"
                log.append(("exited before start", rc))
                continue
        try:
            rc = child.proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.kill(signal.SIGKILL)
            rc = child.wait(timeout=60)
            assert rc == -signal.SIGKILL, child.output
            kills += 1
        else:
            child.wait(timeout=10)
            assert rc == 0, f"an unkilled re-run failed ({rc}):\n{child.output}"
        log.append((f"{where} +{delay:.2f}s", rc, child.lines[-1].strip()[:90] if child.lines else ""))
        if suite_dir.is_dir():
            check_consistent(suite_dir, num_runs=NUM_RUNS)
            _check_finished_runs_untouched(suite_dir, seen)
    assert kills >= KILLS, log

    # A kill never leaves a lock that blocks this run (FileLock links a complete lock file into
    # place), so the final run must succeed at once.
    final = Child("run", suite, "--out", out, cwd=tmp_path)
    rc = final.wait(timeout=300)
    assert rc == 0, final.output
    check_consistent(suite_dir, num_runs=NUM_RUNS)
    _check_finished_runs_untouched(suite_dir, seen)

    rows = read_csv(suite_dir / "results.csv")
    assert comparable(rows) == comparable(reference_rows), f"kill log: {log}"
    for row in rows:
        run_dir = suite_dir / f"{row['variant']}-s{row['seed']}-{row['hash']}"
        epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        assert epochs == [1, 2], f"{run_dir.name}: epochs logged {epochs} (an epoch trained twice or lost)"
    # A kill mid-write may leave the hidden temp file of an atomic write behind (never a torn file
    # under a real name: checked above). Checkpoint temps are removed by the next save; the rest
    # is test_temp_files_left_by_killed_writes_are_removed_by_the_next_run's business.
    leftovers = temp_files(out)
    assert all(_is_atomic_write_litter(out / p) for p in leftovers), leftovers
    assert not [p for p in leftovers if ".checkpoint" in p], f"checkpoint temps outlived the next save: {leftovers}"
    assert not (suite_dir / ".lock").exists(), "the suite lock outlived the run that finished"
    # A kill between a run's result.json and its lock release leaves that run directory's lock
    # behind; it must be stale (dead owner), so that it never blocks anyone (it is taken over).
    for lock in out.rglob(".lock"):
        owner = json.loads(lock.read_text() or "{}").get("pid")
        assert owner is None or not psutil.pid_exists(owner) or psutil.Process(owner).status() == psutil.STATUS_ZOMBIE, lock



def test_temp_files_left_by_killed_writes_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """What a SIGKILL in the middle of an atomic write leaves (its hidden temp file) is removed by
    the next `strabench run` of the suite, which holds the lock and so knows nobody else writes."""
    text = suite_text(variants=(("mnv2", "mobilenetv2_100", ""),)).replace("accuracy = true", "accuracy = false")
    suite = tmp_path / "tiny.toml"
    suite.write_text(text)
    out = tmp_path / "results"
    first = invoke(["run", suite, "--out", out])
    no_exception(first)
    assert first.exit_code == 0, first.stdout
    suite_dir = out / "tiny"
    run_dir = next(p for p in suite_dir.iterdir() if p.is_dir())
    planted = [
        suite_dir / ".results.csv.0123456789ab.tmp",
        suite_dir / ".plan.json.0123456789ab.tmp",
        run_dir / ".result.json.0123456789ab.tmp",
        run_dir / ".measure.json.0123456789ab.tmp",
        run_dir / ".metrics.jsonl.0123456789ab.tmp",
    ]
    an_hour_ago = time.time() - 3600  # left by a kill earlier (a fresh temp may be a live writer's)
    for path in planted:
        path.write_text('{"half": ')  # torn
        os.utime(path, (an_hour_ago, an_hour_ago))
    again = invoke(["run", suite, "--out", out])
    no_exception(again)
    assert again.exit_code == 0, again.stdout
    assert temp_files(out) == []

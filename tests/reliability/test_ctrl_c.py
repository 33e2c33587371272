"""Guarantee 2 -- Ctrl-C stops cleanly, says how to resume, exits 130; the re-run finishes.

SIGINT (what Ctrl-C sends) goes to a real `strabench run` / `strabench train` subprocess while
it trains. It must exit with 130 after leaving every file complete (no temp files, no lock,
the checkpoints verified), print the command that resumes it, and that command must finish.
"""

from __future__ import annotations

import json
import random
import shlex
import signal
import time
from pathlib import Path

import pytest

from .helpers import (
    Child,
    check_consistent,
    invoke,
    no_exception,
    read_csv,
    temp_files,
    tiny_train_args,
    write_suite,
)

EPOCHS = 5  # long enough that Ctrl-C after epoch 1 always lands mid-run, on a fast machine too


def _assert_checkpoints_clean(run_dir: Path) -> None:
    """Any checkpoint left behind verifies against its checksum (no fallback needed)."""
    from strabench.train.checkpoint import load_latest_good

    if (run_dir / "checkpoint.pt").exists() or (run_dir / "checkpoint.prev.pt").exists():
        _, used, warnings = load_latest_good(run_dir)
        assert warnings == [], warnings


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigint_during_suite_run_exits_130_with_resume_command_and_rerun_finishes(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, epochs=EPOCHS)
    out = tmp_path / "results"
    child = Child("run", suite, "--out", out, cwd=tmp_path)
    try:
        assert child.wait_for(": epoch 1:", timeout=180), child.output  # first run, epoch 1 checkpointed
        time.sleep(random.Random(7).uniform(0.0, 0.3))
        assert child.proc.poll() is None, "the suite ended before Ctrl-C: the test interrupted nothing"
        child.kill(signal.SIGINT)
        rc = child.wait(timeout=120)
    finally:
        child.kill(signal.SIGKILL)
    output = child.output
    assert rc == 130, output
    assert "Traceback" not in output
    assert "interrupted" in output and "resume with" in output
    resume_line = next(line for line in output.splitlines() if line.strip().startswith("strabench run"))
    assert str(suite) in resume_line and "--out" in resume_line

    suite_dir = out / "tiny"
    check_consistent(suite_dir, num_runs=2)
    assert temp_files(out) == []
    assert not list(out.rglob(".lock")), "the lock outlived the interrupted run"
    for run_dir in (p for p in suite_dir.iterdir() if p.is_dir()):
        _assert_checkpoints_clean(run_dir)

    again = invoke(shlex.split(resume_line)[1:])  # the printed command, as the user would paste it
    no_exception(again)
    assert again.exit_code == 0, again.stdout + again.stderr
    rows = read_csv(suite_dir / "results.csv")
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row in rows:
        run_dir = suite_dir / f"{row['variant']}-s{row['seed']}-{row['hash']}"
        epochs = [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert epochs == list(range(1, EPOCHS + 1))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigint_during_train_exits_130_with_resume_command_and_rerun_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = Child("train", "mobilenetv2_100", *tiny_train_args(EPOCHS), "--out", run_dir, cwd=tmp_path)
    try:
        assert child.wait_for("epoch 1:", timeout=180), child.output  # epoch 1 is checkpointed
        assert child.proc.poll() is None, "training ended before Ctrl-C: the test interrupted nothing"
        child.kill(signal.SIGINT)
        rc = child.wait(timeout=120)
    finally:
        child.kill(signal.SIGKILL)
    output = child.output
    assert rc == 130, output
    assert "Traceback" not in output
    assert "interrupted" in output
    resume = next(line for line in output.splitlines() if "resume with:" in line).split("resume with:", 1)[1].strip()
    assert resume.startswith("strabench train mobilenetv2_100") and "--resume" in resume
    assert not (run_dir / "result.json").exists()
    assert temp_files(run_dir) == [] and not (run_dir / ".lock").exists()
    _assert_checkpoints_clean(run_dir)

    again = invoke(shlex.split(resume)[1:])
    no_exception(again)
    assert again.exit_code == 0, again.stderr
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    epochs = [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert epochs == list(range(1, EPOCHS + 1))

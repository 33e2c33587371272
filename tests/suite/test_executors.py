"""Executors for real: --jobs 2 worker processes, and the slurm path through submitit's
LocalExecutor (real subprocess jobs), including a job preempted mid-run (SIGUSR2, as SLURM
signals it) that is requeued and resumes, and a job killed with SIGKILL that a resubmission
resumes. Training is the fake engine (pickled into the worker processes), so runs take seconds.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest

from strabench.io import read_jsonl

from strabench.locks import acquire_lock
from strabench.suite.config import load_suite
from strabench.suite.executors import follow, run_parallel, submit_jobs
from strabench.suite.runner import plan_runs
from strabench.suite.status import run_lock_dir, suite_states

from .fakes import FakeEngine, write_suite

TESTS_DIR = Path(__file__).resolve().parents[1]
SUITE = """\
name = "x"
data = "synthetic_reid"
seeds = [0]
[train.quick]
epochs = {epochs}
[measure]
params = false
macs = false
accuracy = true
[executor]
timeout_min = 10
{variants}
"""
VARIANT = '[[variants]]\nname = "{name}"\nmodel = "resnet50"\n'


@pytest.fixture(autouse=True)
def _workers_find_the_fake(monkeypatch):
    """Worker processes unpickle the fake engine by reference: let them import it."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    for name in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)


def make_plan(tmp_path: Path, names: list[str], epochs: int = 2):
    text = SUITE.format(epochs=epochs, variants="\n".join(VARIANT.format(name=n) for n in names))
    return plan_runs(load_suite(write_suite(tmp_path, text)), tmp_path / "out", check_models=False)


def engine(epoch_s: float = 0.0) -> FakeEngine:
    fake = FakeEngine()
    fake.log_calls = True
    fake.epoch_s = epoch_s
    return fake


def results(plan) -> list[dict[str, str]]:
    with open(plan.out_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def calls(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "fake_calls.jsonl").records


def epochs_logged(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl").records]


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_jobs_2_runs_two_workers_at_once_on_a_share_of_the_cores(tmp_path):
    plan = make_plan(tmp_path, ["a", "b"])
    outcome = run_parallel(plan, 2, fit=engine(epoch_s=1.5), poll_s=0.1)
    assert outcome.attempted == {s.run_id: "finished" for s in plan.selected}
    runs = [plan.run_dir(s) for s in plan.selected]
    first, second = (calls(r)[0] for r in runs)
    assert first["pid"] != second["pid"] != os.getpid()
    assert abs(first["time"] - second["time"]) < 2.5, "the two runs did not run side by side"
    assert first["threads"] == second["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert [r["status"] for r in results(plan)] == ["finished", "finished"]
    states = {r["run_id"]: r for r in suite_states(plan.out_dir)}
    assert {r["state"] for r in states.values()} == {"finished"} and {r["attempts"] for r in states.values()} == {1}
    # Done is done: a second invocation starts no worker.
    again = run_parallel(plan, 2, fit=engine(), poll_s=0.1)
    assert again.attempted == {} and sorted(again.skipped) == sorted(s.run_id for s in plan.selected)


@pytest.mark.slow
def test_jobs_never_run_a_run_another_worker_holds(tmp_path):
    plan = make_plan(tmp_path, ["a", "b"])
    held, free = plan.selected
    with acquire_lock(run_lock_dir(plan.out_dir, held.run_id)):
        outcome = run_parallel(plan, 2, fit=engine(), poll_s=0.1)
    assert outcome.attempted == {held.run_id: "locked", free.run_id: "finished"}
    assert not (plan.run_dir(held) / "fake_calls.jsonl").exists()


@pytest.mark.slow
def test_submitit_job_preempted_mid_run_is_requeued_and_resumes(tmp_path):
    plan = make_plan(tmp_path, ["a"], epochs=4)
    spec = plan.selected[0]
    run_dir = plan.run_dir(spec)
    submitted, left_out = submit_jobs(plan, plan.suite.executor, cluster="local", fit=engine(epoch_s=1.0))
    assert left_out == {} and len(submitted) == 1
    job = submitted[0][1]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["state"] == "queued" and state["job_id"] == str(job.job_id)
    wait_for(lambda: (run_dir / "checkpoint.pt").is_file(), what="the first epoch's checkpoint")
    pid = json.loads((run_dir / "state.json").read_text())["pid"]
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before a time limit / preemption (submitit's signal)
    rows = follow(plan, [spec.run_id], lambda rows: None, jobs=[job], poll_s=0.2)
    assert rows[0]["state"] == "finished", rows
    made = calls(run_dir)
    assert len(made) == 2 and made[0]["start_epoch"] == 1 and made[1]["start_epoch"] >= 2, made
    assert made[0]["pid"] != made[1]["pid"]
    assert epochs_logged(run_dir) == [1, 2, 3, 4]  # never an epoch twice
    assert json.loads((run_dir / "state.json").read_text())["attempts"] == 2
    assert [(r["variant"], r["status"]) for r in results(plan)] == [("a", "finished")]
    assert "requeued" in (job.stdout() or "").lower() + (job.stderr() or "").lower()


@pytest.mark.slow
def test_submitit_job_killed_mid_run_is_resumed_by_a_resubmission(tmp_path):
    plan = make_plan(tmp_path, ["a"], epochs=3)
    spec = plan.selected[0]
    run_dir = plan.run_dir(spec)
    (_, job), = submit_jobs(plan, {}, cluster="local", fit=engine(epoch_s=1.0))[0]
    wait_for(lambda: (run_dir / "checkpoint.pt").is_file(), what="the first epoch's checkpoint")
    os.kill(json.loads((run_dir / "state.json").read_text())["pid"], signal.SIGKILL)
    job.wait()
    (state,) = suite_states(plan.out_dir)
    assert state["state"] == "interrupted"  # state.json said running; its lock's holder is dead
    (_, again), = submit_jobs(plan, {}, cluster="local", fit=engine())[0]
    rows = follow(plan, [spec.run_id], lambda rows: None, jobs=[again], poll_s=0.2)
    assert rows[0]["state"] == "finished"
    assert [c["start_epoch"] for c in calls(run_dir)][1] >= 2
    assert epochs_logged(run_dir) == [1, 2, 3]
    assert submit_jobs(plan, {}, cluster="local")[1] == {spec.run_id: f"finished as job {again.job_id}"}


def test_status_cli_and_bad_executor_options(tmp_path):
    from typer.testing import CliRunner

    from strabench.cli import app

    plan = make_plan(tmp_path, ["a", "b"])
    done, never = plan.selected
    from strabench.suite.executors import RunJob, portable_plan

    assert RunJob(portable_plan(plan), done, executor="local", fit=FakeEngine())() == "finished"
    from strabench.io import atomic_write_json

    atomic_write_json(plan.out_dir / "plan.json", plan.as_dict())
    runner = CliRunner()
    result = runner.invoke(app, ["status", str(plan.out_dir), "--json"])
    assert result.exit_code == 0, result.output
    states = {r["run_id"]: r["state"] for r in json.loads(result.output)}
    assert states == {done.run_id: "finished", never.run_id: "pending"}
    suite = str(plan.suite.path)
    for args, message in (
        (["--executor", "pbs"], "--executor must be one of local, slurm, submitit-local"),
        (["--executor", "slurm", "--jobs", "2"], "--jobs is for --executor local"),
        (["--jobs", "0"], "--jobs must be >= 1"),
    ):
        result = runner.invoke(app, ["run", suite, "--out", str(tmp_path / "out"), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_executor_table_is_checked(tmp_path):
    from strabench.errors import ConfigError

    text = SUITE.format(epochs=1, variants=VARIANT.format(name="a")).replace("timeout_min = 10", "timeout_mins = 10")
    with pytest.raises(ConfigError, match=r"executor\.timeout_mins: unknown key \(did you mean 'timeout_min'\?\)"):
        load_suite(write_suite(tmp_path, text))
    text = SUITE.format(epochs=1, variants=VARIANT.format(name="a")).replace("timeout_min = 10", 'gpus_per_node = "2"')
    with pytest.raises(ConfigError, match=r"executor\.gpus_per_node: expected an integer"):
        load_suite(write_suite(tmp_path, text))


def test_break_lock_names_what_it_breaks(tmp_path):
    from typer.testing import CliRunner
    from rich.console import Console

    from strabench.cli import app
    from strabench.cli.run import _break_locks

    plan = make_plan(tmp_path, ["a"])
    lock_dir = run_lock_dir(plan.out_dir, plan.selected[0].run_id)
    lock_dir.mkdir(parents=True)
    (lock_dir / ".lock").write_text(json.dumps({"pid": 4242, "hostname": "node17.invalid", "started": "x"}))
    result = CliRunner().invoke(app, ["run", str(plan.suite.path), "--out", str(tmp_path / "out"), "--break-lock", "--dry-run"])
    assert result.exit_code == 0 and (lock_dir / ".lock").exists()  # --dry-run breaks nothing
    out = Console(record=True, width=300)
    _break_locks(out, plan)
    text = out.export_text()
    assert "broke lock of pid 4242 on node17.invalid" in text and "heartbeat" in text, text
    assert not (lock_dir / ".lock").exists()

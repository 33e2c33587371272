"""The suite runner against the fit contract (fake engine): hashing, skipping, resuming,
failures, results.csv, sharding, locking, dry runs."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import LockError
from strabench.suite import runner
from strabench.suite.config import load_suite
from strabench.suite.runner import parse_shard, plan_runs, run_status, run_suite, shard_runs

from .fakes import FakeEngine, write_suite


def invoke(*args: str):
    return CliRunner().invoke(app, [*args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def dry(suite: Path, out: Path, *extra: str) -> dict[str, str]:
    result = invoke("run", str(suite), "--out", str(out), "--dry-run", "--json", *extra)
    assert result.exit_code == 0, result.output
    return {row["run_id"]: row["status"] for row in json.loads(result.output)}


# --- hashing ------------------------------------------------------------------------------------


def test_hash_changes_with_every_setting_and_only_then(tmp_path: Path) -> None:
    def ids(text: str | None = None, **kwargs) -> set[str]:
        suite = load_suite(write_suite(tmp_path, text, **kwargs))
        return {r.run_id for r in plan_runs(suite, tmp_path, check_models=False).runs}

    base = ids(epochs=2)
    assert base == ids(epochs=2), "same config, same runs"
    assert ids(epochs=3).isdisjoint(base), "a training setting changes every run's hash"
    text = write_suite(tmp_path, epochs=2).read_text()
    assert ids(text.replace('macs = ["paper"]', 'macs = ["paper", "fvcore"]')).isdisjoint(base), "measure settings are hashed"
    changed = ids(text.replace('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { groups = 4 }'))
    assert changed & base == {r for r in base if r.startswith("base-")}, "only the changed variant gets a new hash"
    two_seeds = ids(seeds="[0, 1]", epochs=2)
    assert base < two_seeds and len(two_seeds) == 4


def test_description_does_not_change_the_hash(tmp_path: Path) -> None:
    text = write_suite(tmp_path).read_text()
    a = plan_runs(load_suite(write_suite(tmp_path, text)), tmp_path, check_models=False)
    b = plan_runs(load_suite(write_suite(tmp_path, text.replace("test suite", "renamed"))), tmp_path, check_models=False)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]


# --- running, skipping, resuming ----------------------------------------------------------------


def test_run_writes_run_dirs_and_results_csv(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, seeds="[0, 1]")
    result = invoke("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "results" / "t"
    rows = read_csv(out / "results.csv")
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [
        ("base", "0", "finished"), ("base", "1", "finished"), ("stra", "0", "finished"), ("stra", "1", "finished")]
    for row in rows:
        run_dir = out / f"{row['variant']}-s{row['seed']}-{row['hash']}"
        for name in ("config.toml", "env.json", "metrics.jsonl", "checkpoint.pt", "result.json", "measure.json", "run.json"):
            assert (run_dir / name).is_file(), name
        assert row["config"] == f"{run_dir.name}/config.toml"
        assert float(row["mAP"]) == 50 + 10 * int(row["seed"]) + (5 if row["variant"] == "stra" else 0)
        assert row["params"] and row["macs_paper"] and row["train_time_s"] == "1.5"
        assert float(row["mAP_untrained"]) == 10 + int(row["seed"])
    env = json.loads((run_dir / "env.json").read_text())
    assert {"python", "torch", "strabench", "device", "threads", "git_commit", "hostname"} <= set(env)
    assert not list(out.rglob("*.tmp")), "no temp files left behind"
    assert not (out / ".lock").exists(), "the lock is released"


def test_finished_runs_are_skipped(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    assert invoke("run", str(suite), "--out", str(tmp_path / "r")).exit_code == 0
    assert len(engine.calls) == 2
    result = invoke("run", str(suite), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0
    assert len(engine.calls) == 2, "nothing retrained"
    assert "0 run(s) to do, 2 already finished" in result.output and "skipped" in result.output


def test_changed_setting_makes_new_runs_and_keeps_old_dirs(tmp_path: Path, engine: FakeEngine) -> None:
    out = tmp_path / "r"
    assert invoke("run", str(write_suite(tmp_path, epochs=1)), "--out", str(out)).exit_code == 0
    assert invoke("run", str(write_suite(tmp_path, epochs=2)), "--out", str(out)).exit_code == 0
    assert len(engine.calls) == 4
    assert len([p for p in (out / "t").iterdir() if p.is_dir()]) == 4
    rows = read_csv(out / "t" / "results.csv")
    assert len(rows) == 4, "results.csv keeps the finished runs of every configuration"
    assert len({r["group"] for r in rows}) == 4, "each variant in each configuration is a group of its own"
    assert {r["status"] for r in rows} == {"finished"}


def test_interrupted_run_is_resumed_not_restarted(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, epochs=3)
    out = tmp_path / "r"
    plan = plan_runs(load_suite(suite), out)
    first, second = plan.runs
    engine.interrupt_runs.add(second.run_id)  # Ctrl-C after its first epoch's checkpoint
    result = invoke("run", str(suite), "--out", str(out))
    assert result.exit_code == 130, result.output
    assert "resume with" in result.output and f"strabench run {suite}" in " ".join(result.output.split())
    assert dry(suite, out) == {first.run_id: "done", second.run_id: "partial"}
    assert read_csv(out / "t" / "results.csv")[1]["status"] == "pending"
    assert not (out / "t" / ".lock").exists(), "Ctrl-C releases the lock"

    result = invoke("run", str(suite), "--out", str(out))
    assert result.exit_code == 0, result.output
    resumed = engine.calls[-1]
    assert resumed == {"run": second.run_id, "resume": True, "had_checkpoint": True}
    records = [json.loads(line) for line in (plan.run_dir(second) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3], "epoch 1 was not trained again"
    assert dry(suite, out) == {first.run_id: "done", second.run_id: "done"}


def test_numerical_error_marks_run_failed_and_suite_continues(tmp_path: Path, engine: FakeEngine) -> None:
    engine.fail_models.add("resnet50")
    suite = write_suite(tmp_path, seeds="[0, 1]")
    result = invoke("run", str(suite), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1, result.output
    rows = read_csv(tmp_path / "r" / "t" / "results.csv")
    assert [r["status"] for r in rows] == ["failed", "failed", "finished", "finished"]
    assert rows[0]["mAP"] == "" and "NumericalError: loss is nan" in rows[0]["error"]
    failed = json.loads((tmp_path / "r" / "t" / f"base-s0-{rows[0]['hash']}" / "result.json").read_text())
    assert failed["status"] == "failed" and "loss is nan" in failed["reason"]
    assert "2 run(s) failed" in result.output
    assert dry(suite, tmp_path / "r")[f"base-s0-{rows[0]['hash']}"] == "failed"


def test_unexpected_exception_is_recorded_with_traceback(tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec):
        raise RuntimeError("boom in measuring")

    monkeypatch.setattr(runner, "measure_model", broken)
    result = invoke("run", str(write_suite(tmp_path)), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    logs = list((tmp_path / "r" / "t").glob("*/error.log"))
    assert len(logs) == 2 and "boom in measuring" in logs[0].read_text()


def test_results_csv_is_consistent_after_each_run_and_written_atomically(tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import strabench.io as sio

    suite = write_suite(tmp_path, seeds="[0, 1]")
    out = tmp_path / "r"
    csv_path = out / "t" / "results.csv"
    seen: list[list[str]] = []
    engine.on_call = lambda run_dir: seen.append([r["status"] for r in read_csv(csv_path)])
    writes: list[Path] = []
    real = sio.atomic_write_text
    monkeypatch.setattr(sio, "atomic_write_text", lambda path, text, **kw: (writes.append(Path(path)), real(path, text, **kw))[1])
    assert invoke("run", str(suite), "--out", str(out)).exit_code == 0
    # before run k starts, results.csv already shows runs 1..k-1 finished and the rest pending
    assert seen == [["finished"] * k + ["pending"] * (4 - k) for k in range(4)]
    assert writes.count(csv_path) >= 5, "rewritten (atomically) after every run"


def test_results_csv_is_rebuilt_from_run_dirs(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    out = tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out)).exit_code == 0
    csv_path = out / "t" / "results.csv"
    before = csv_path.read_text()
    csv_path.write_text("garbage\n")
    assert invoke("run", str(suite), "--out", str(out)).exit_code == 0
    assert csv_path.read_text() == before


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_lists_statuses_and_creates_nothing(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, seeds="[0, 1]")
    out = tmp_path / "r"
    statuses = dry(suite, out)
    assert sorted(statuses.values()) == ["pending"] * 4
    assert not out.exists()
    plan = plan_runs(load_suite(suite), out)
    done, partial, failed, pending = plan.runs
    runner.execute_run(done, plan.run_dir(done))
    plan.run_dir(partial).mkdir(parents=True)
    (plan.run_dir(partial) / "checkpoint.pt").write_text("{}")
    plan.run_dir(failed).mkdir(parents=True)
    (plan.run_dir(failed) / "result.json").write_text(json.dumps({"status": "failed", "reason": "x"}))
    assert dry(suite, out) == {done.run_id: "done", partial.run_id: "partial", failed.run_id: "failed", pending.run_id: "pending"}
    assert len(engine.calls) == 1
    human = invoke("run", str(suite), "--out", str(out), "--dry-run")
    assert human.exit_code == 0 and "1 done, 1 failed, 1 partial, 1 pending" in human.output


def test_finished_result_without_measure_is_partial(tmp_path: Path, engine: FakeEngine) -> None:
    plan = plan_runs(load_suite(write_suite(tmp_path)), tmp_path / "r")
    spec = plan.runs[0]
    runner.execute_run(spec, plan.run_dir(spec))
    assert run_status(plan.run_dir(spec), spec.measure) == "finished"
    (plan.run_dir(spec) / "measure.json").unlink()
    assert run_status(plan.run_dir(spec), spec.measure) == "partial"
    runner.execute_run(spec, plan.run_dir(spec))
    assert run_status(plan.run_dir(spec), spec.measure) == "finished"


# --- sharding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_runs(tmp_path: Path, n: int) -> None:
    suite = load_suite(write_suite(tmp_path, seeds="[0, 1, 2]"))
    everything = plan_runs(suite, tmp_path, check_models=False).runs
    shards = [{r.run_id for r in plan_runs(suite, tmp_path, shard=(k, n), check_models=False).selected} for k in range(1, n + 1)]
    assert set().union(*shards) == {r.run_id for r in everything}
    assert sum(len(s) for s in shards) == len(everything), "disjoint"
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1, "balanced"
    assert shards == [{r.run_id for r in shard_runs(everything, (k, n))} for k in range(1, n + 1)], "deterministic"


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("3/2", "0/1", "1/0", "x", "1/2/3"):
        with pytest.raises(Exception):
            parse_shard(bad)


def test_shards_into_one_directory_merge(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, seeds="[0, 1]")
    out = tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out), "--shard", "1/2").exit_code == 0
    statuses = [r["status"] for r in read_csv(out / "t" / "results.csv")]
    assert statuses.count("finished") == 2 and statuses.count("pending") == 2
    assert invoke("run", str(suite), "--out", str(out), "--shard", "2/2").exit_code == 0
    assert [r["status"] for r in read_csv(out / "t" / "results.csv")] == ["finished"] * 4
    assert len(engine.calls) == 4


def test_only_runs_the_named_variants(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    assert invoke("run", str(suite), "--out", str(tmp_path / "r"), "--only", "stra").exit_code == 0
    assert len(engine.calls) == 1 and engine.calls[0]["run"].startswith("stra-")


def test_seeds_option_overrides_the_suite(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    assert invoke("run", str(suite), "--out", str(tmp_path / "r"), "--seeds", "3,4", "--only", "base").exit_code == 0
    assert sorted(c["run"].split("-")[1] for c in engine.calls) == ["s3", "s4"]


# --- locking ------------------------------------------------------------------------------------


def test_lock_held_by_live_process_refuses(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    holder = (tmp_path / "r" / "t")
    holder.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (holder / ".lock").write_text(json.dumps({"pid": sleeper.pid, "hostname": socket.gethostname(), "started": "now"}))
        result = invoke("run", str(suite), "--out", str(tmp_path / "r"))
        assert result.exit_code == 2, result.output
        assert f"locked by pid {sleeper.pid}" in " ".join(result.output.split())
        assert engine.calls == []
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is dead now: its lock is stale and is taken over
    result = invoke("run", str(suite), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert len(engine.calls) == 2


def test_lock_is_per_suite_directory_and_per_shard(tmp_path: Path, engine: FakeEngine) -> None:
    from strabench.locks import acquire_lock

    plan = plan_runs(load_suite(write_suite(tmp_path)), tmp_path / "r", shard=(1, 2))
    with acquire_lock(plan.out_dir / ".locks" / "shard-2-of-2"):
        run_suite(plan)  # another shard running does not block this one
    with acquire_lock(plan.out_dir / ".locks" / "shard-1-of-2"):
        with pytest.raises(LockError):
            run_suite(plan)


# --- torchrun -----------------------------------------------------------------------------------


def test_torchrun_worker_only_joins_training(tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    plan = plan_runs(load_suite(write_suite(tmp_path)), tmp_path / "r")
    worker_calls: list[str] = []
    monkeypatch.setattr(runner, "_fit", lambda config, out_dir, *, resume, progress, keep_checkpoints="last": worker_calls.append((Path(out_dir).name, resume, progress)))
    outcome = run_suite(plan)
    assert worker_calls == [(r.run_id, True, None) for r in plan.runs], "same runs, same order, no progress view"
    assert not (tmp_path / "r").exists(), "rank > 0 writes nothing (no lock, no csv)"
    assert outcome.rows == [] and set(outcome.attempted.values()) == {"finished"}
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(runner, "_fit", engine)
    assert not run_suite(plan).failed and (tmp_path / "r" / "t" / "results.csv").is_file()


def test_torchrun_worker_skips_complexity_only_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    text = write_suite(tmp_path).read_text().replace("accuracy = true", "accuracy = false")
    plan = plan_runs(load_suite(write_suite(tmp_path, text)), tmp_path / "r")
    monkeypatch.setattr(runner, "_fit", lambda *a, **k: pytest.fail("no training in a complexity suite"))
    assert run_suite(plan).attempted == {}


def test_run_dir_locked_by_another_process_is_left_alone(tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(config, out_dir, *, resume, progress, keep_checkpoints="last"):
        raise LockError(f"{out_dir} is locked by pid 1 on this host")

    monkeypatch.setattr(runner, "_fit", busy)
    suite = write_suite(tmp_path)
    result = invoke("run", str(suite), "--out", str(tmp_path / "r"), "--only", "base")
    assert result.exit_code == 1 and "another process holds" in result.output
    assert not list((tmp_path / "r" / "t").glob("*/result.json")), "no failure written into a directory someone else owns"

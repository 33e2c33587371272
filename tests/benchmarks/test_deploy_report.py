"""benchmarks/deploy_report.py: one bench step per (batch, runtime), and a report whose target
verdicts come from the rows (checked on hand-made rows, not on timings)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def deploy(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("deploy_report")


def _row(model: str, ratio: float, **extra) -> dict:
    return {"model": model, "ratio_to_baseline": ratio, "ratio_rounds": [ratio, ratio], "median_ms": 10 * ratio,
            "noisy": False, "noise": None, "note": None, "compile_s": extra.pop("compile_s", None), **extra}


def _report(deploy, rows_by_key: dict[str, list[dict]], failed: tuple[str, ...] = ()) -> dict:
    steps = []
    for batch in (1, 32):
        for rt in deploy.RUNTIMES:
            key = f"batch{batch}-{rt}"
            if key in failed:
                steps.append({"key": key, "title": key, "kind": "bench", "status": "failed", "elapsed_s": 1.0, "error": "exit 1: boom"})
            else:
                steps.append({"key": key, "title": key, "kind": "bench", "status": "ok", "elapsed_s": 1.0,
                              "result": rows_by_key.get(key, [_row("resnet50", 1.0)])})
    env = {"cpu": "Test CPU", "cpu_count": 2, "ram_gib": 1.0, "platform": "test", "torch": "x", "python": "3",
           "git_commit": "abc", "git_dirty": False, "strabench": "0", "loadavg_1m": 0.0, "niceness": 0}
    return {"smoke": False, "models": ["resnet50", "resnet50_local_mode", "resnet50_stra"], "batches": [1, 32],
            "environment": env, "onnxruntime": "1", "invocation": "python benchmarks/deploy_report.py",
            "started_utc": "t0", "finished_utc": "t1", "total_s": 1.0, "budget_s": 10.0, "steps": steps}


def test_plan_has_one_step_per_batch_and_runtime(deploy) -> None:
    steps = deploy.plan(("resnet50", "resnet50_stra"), (1, 32), rounds=3, min_run_time=0.5, threads=2, input_size=None, timeout_s=9)
    assert [s.key for s in steps] == [f"batch{b}-{rt}" for b in (1, 32) for rt in deploy.RUNTIMES]
    for step in steps:
        argv = step.argv
        assert argv[argv.index("--baseline") + 1] == "resnet50" and "resnet50_stra" in argv and "--json" in argv
        assert argv[argv.index("--mode") + 1] == "infer"
    flags = {s.key.split("-", 1)[1]: s.argv for s in steps if s.key.startswith("batch1-")}
    assert "--channels-last" in flags["channels_last"] and "--runtime" not in flags["eager"]
    assert flags["compile"][flags["compile"].index("--runtime") + 1] == "compile"
    assert flags["onnxruntime"][flags["onnxruntime"].index("--runtime") + 1] == "onnxruntime"


def test_rounds_and_seconds_per_batch(deploy) -> None:
    steps = deploy.plan(("resnet50", "resnet50_stra"), (1, 32), rounds=deploy.ROUNDS, min_run_time=deploy.MIN_RUN_TIME,
                        threads=2, input_size=None, timeout_s=9)
    for step in steps:
        batch = int(step.argv[step.argv.index("--batch") + 1])
        assert step.argv[step.argv.index("--rounds") + 1] == str(deploy.ROUNDS[batch])
        assert step.argv[step.argv.index("--min-run-time") + 1] == str(deploy.MIN_RUN_TIME[batch])
    assert deploy.ROUNDS[1] > deploy.ROUNDS[32]  # the tight batch-1 targets get the longer median


def test_targets_follow_the_rows(deploy) -> None:
    rows = {
        # batch 1 eager: 0.87 <= 0.88 met; 0.87 / 0.86 = 1.012 <= 1.03 met
        "batch1-eager": [_row("resnet50", 1.0), _row("resnet50_local_mode", 0.86), _row("resnet50_stra", 0.87)],
        # batch 32 channels_last: 0.95 > 0.90 not met
        "batch32-channels_last": [_row("resnet50", 1.0), _row("resnet50_stra", 0.95)],
        "batch1-compile": [_row("resnet50", 1.0, compile_s=12.5), _row("resnet50_stra", 0.8, compile_s=15.25)],
    }
    text = deploy.render(_report(deploy, rows, failed=("batch32-onnxruntime",)))
    targets = text.split("## Targets (resnet50_stra)")[1]
    lines = [line for line in targets.splitlines() if line.startswith("| batch")]
    assert lines[0].endswith("| 0.870 | met |") and "resnet50_stra / resnet50" in lines[0]
    assert lines[1].endswith("| 1.012 | met |") and "resnet50_local_mode" in lines[1]
    assert lines[2].endswith("| 0.950 | **not met** |")
    assert "**onnxruntime not measured** (failed: exit 1: boom)" in text.split("## Batch 32")[1]
    batch1 = text.split("## Batch 1")[1].split("## Batch 32")[0]
    stra = next(line for line in batch1.splitlines() if line.startswith("| resnet50_stra |"))
    assert "0.870" in stra and "15.2" in stra  # eager ratio; compile's one-off seconds

"""``run --until-decided``: rounds fixed in advance, stopped when decided, recorded, resumable,
refused when the design would change, with --jobs; the engine is the fake (seconds per suite)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.report.tables import load_suite_results, summarise
from strabench.suite import runner
from strabench.suite.adaptive import DESIGN_JSON, read_design, seed_order

from .fakes import NoisyEngine, fake_measure, write_suite

TESTS_DIR = Path(__file__).resolve().parents[1]
ANALYSIS = """
equivalence_margin = 1.0
min_effect = 2.0
max_seeds = 12
"""


@pytest.fixture
def noisy(monkeypatch: pytest.MonkeyPatch) -> NoisyEngine:
    fake = NoisyEngine()
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    return fake


def suite_file(tmp_path: Path, seeds: str = "[0, 1, 2]", extra: str = ANALYSIS) -> Path:
    path = write_suite(tmp_path, seeds=seeds, epochs=1)
    text = path.read_text().replace(f"seeds = {seeds}\n", f"seeds = {seeds}\n{extra}\n")
    path.write_text(text)
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def test_seed_order() -> None:
    assert seed_order([3, 0], 5) == (3, 0, 1, 2, 4)
    assert seed_order([0, 1, 2], 3) == (0, 1, 2)


def test_rounds_until_decided_are_recorded_and_reported(tmp_path: Path, noisy: NoisyEngine) -> None:
    suite = suite_file(tmp_path)
    out = tmp_path / "results"
    result = run(str(suite), "--out", str(out), "--until-decided")
    assert result.exit_code == 0, result.output
    assert "stopped after look" in result.output and "every comparison is decided" in result.output
    assert "stra vs base, mAP: better" in result.output
    design = read_design(out / "t")
    assert design["looks"] == [3, 6, 9, 12] and design["stop"]["reason"] == "decided"
    looks_run = len(design["rounds"])
    assert 1 < looks_run < 4, "decided before the last look, after the first"
    seeds_run = sorted({c["run"] for c in noisy.calls})
    assert len(seeds_run) == 2 * design["looks"][looks_run - 1], "every variant ran exactly the seeds of the looks run"
    summary = summarise(load_suite_results(out / "t"), paper=False)
    stra = next(r for r in summary if r["variant"] == "stra")
    assert stra["mAP_sequential"] and stra["mAP_look"] == looks_run - 1 and stra["mAP_verdict"] == "better"
    report = CliRunner().invoke(app, ["report", str(out / "t"), "--no-plots"])
    assert "Run until decided" in report.output and "added adaptively" in report.output
    (out / "t" / DESIGN_JSON).write_text("{ damaged")
    report = CliRunner().invoke(app, ["report", str(out / "t"), "--no-plots"])
    assert report.exit_code == 0 and "sequential.json cannot be read" in " ".join(report.output.split())


def test_a_decided_variant_gets_no_more_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three variants: one far better (decided at the first look), one like the baseline."""
    fake = NoisyEngine(bonus={"resnet50_stra": 30.0}, noise=1.0)
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    suite = suite_file(tmp_path, extra=ANALYSIS.replace("max_seeds = 12", "max_seeds = 6"))
    text = suite.read_text() + '\n[[variants]]\nname = "same"\nmodel = "resnet50_local"\n'
    suite.write_text(text)
    out = tmp_path / "results"
    result = run(str(suite), "--out", str(out), "--until-decided")
    assert result.exit_code == 0, result.output
    design = read_design(out / "t")
    stra_runs = {c["run"] for c in fake.calls if c["run"].startswith("stra-")}
    same_runs = {c["run"] for c in fake.calls if c["run"].startswith("same-")}
    assert len(stra_runs) == 3, "decided at the first look: no further seeds"
    assert len(same_runs) == design["looks"][len(design["rounds"]) - 1] > 3
    assert design["rounds"][1]["variants"] == ["base", "same"]
    assert "look 2 of 4: 4 seeds of base, same (" in " ".join(result.output.split())
    rows = [json.loads((d / "run.json").read_text()) for d in (out / "t").glob("*/")]
    assert all(r["variant"] != "stra" or r["seed"] < 3 for r in rows)
    csv_text = (out / "t" / "results.csv").read_text()
    assert "pending" not in csv_text, "seeds a decided variant never needed are not 'pending'"


def test_interrupted_mid_round_resumes_with_the_same_command(tmp_path: Path, noisy: NoisyEngine) -> None:
    suite = suite_file(tmp_path)
    out = tmp_path / "results"
    first = run(str(suite), "--out", str(out), "--until-decided", "--dry-run")
    assert "looks after 3, 6, 9, 12 seeds" in first.output
    # the first run of the second round is interrupted
    noisy.on_call = None
    original = noisy.__call__
    state = {"runs": 0}

    def interrupt_fourth(config, out_dir, **kwargs):
        state["runs"] += 1
        if state["runs"] == 8:
            raise KeyboardInterrupt
        return original(config, out_dir, **kwargs)

    runner_fit = runner._fit
    try:
        runner._fit = interrupt_fourth
        stopped = run(str(suite), "--out", str(out), "--until-decided")
    finally:
        runner._fit = runner_fit
    assert stopped.exit_code == 130, stopped.output
    assert "--until-decided --max-seeds 12" in stopped.output, "the resume line repeats the design"
    stra = next(r for r in summarise(load_suite_results(out / "t"), paper=False) if r["variant"] == "stra")
    assert stra["mAP_look"] == 0 and stra["mAP_verdict"] == "undecided", "a look whose seeds are not all run is not tested"
    calls_before = len(noisy.calls)
    resumed = run(str(suite), "--out", str(out), "--until-decided")
    assert resumed.exit_code == 0, resumed.output
    finished_once = [c["run"] for c in noisy.calls[calls_before:]]
    assert len(finished_once) == len(set(finished_once)), "no run trained twice after resuming"
    assert not set(finished_once) & {c["run"] for c in noisy.calls[:calls_before] if c["run"]}, (
        "runs finished before the interruption were not run again"
    )


def test_the_design_cannot_change_once_started(tmp_path: Path, noisy: NoisyEngine) -> None:
    suite = suite_file(tmp_path)
    out = tmp_path / "results"
    assert run(str(suite), "--out", str(out), "--until-decided", "--max-seeds", "4").exit_code == 0
    again = run(str(suite), "--out", str(out), "--until-decided", "--max-seeds", "20")
    assert again.exit_code == 2 and "design was fixed as" in again.output and "max_seeds 4" in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_budget_stops_before_a_round_that_would_pass_it(tmp_path: Path, noisy: NoisyEngine) -> None:
    noisy.bonus = {}  # nothing to find: only the budget ends it
    suite = suite_file(tmp_path)
    out = tmp_path / "results"
    design_path = out / "t" / DESIGN_JSON
    result = run(str(suite), "--out", str(out), "--until-decided", "--max-minutes", "0.0001")
    assert result.exit_code == 0, result.output
    assert "budget" in result.output and "the budget is spent" in result.output
    state = json.loads(design_path.read_text())
    assert len(state["rounds"]) == 1 and state["stop"]["reason"] == "budget"
    assert state["rounds"][0]["runs_run"] == 6 and state["rounds"][0]["wall_s"] > 0


@pytest.mark.parametrize("args,message", [
    (["--until-decided", "--shard", "1/2"], "cannot run one --shard"),
    (["--until-decided", "--executor", "slurm"], "--executor local"),
    (["--max-seeds", "5"], "applies to --until-decided only"),
    (["--until-decided", "--only", "stra"], "add it to --only"),
    (["--until-decided", "--max-seeds", "2"], "fewer than the 3 seeds"),
])
def test_refusals_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    suite = suite_file(tmp_path)
    result = run(str(suite), "--out", str(tmp_path / "results"), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "results").exists()


def test_a_suite_with_settings_is_refused_in_one_line(tmp_path: Path) -> None:
    """--until-decided decides one comparison per variant: a sweep over [[settings]] would need one
    design per setting, so it is refused before anything runs."""
    suite = suite_file(tmp_path)
    suite.write_text(suite.read_text() + '\n[[settings]]\nname = "low"\n\n[[settings]]\nname = "high"\n')
    result = run(str(suite), "--out", str(tmp_path / "results"), "--until-decided")
    assert result.exit_code == 2 and "has [[settings]]" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "results").exists()
    assert run(str(suite), "--out", str(tmp_path / "results"), "--dry-run").exit_code == 0, "the suite itself is fine"


def test_a_budget_of_seeds_is_required(tmp_path: Path) -> None:
    suite = suite_file(tmp_path, extra="min_effect = 2.0")
    result = run(str(suite), "--out", str(tmp_path / "results"), "--until-decided")
    assert result.exit_code == 2 and "--max-seeds N, or max_seeds in" in result.output


def test_until_decided_with_parallel_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rounds loop drives the executors' run_parallel (worker processes with the fake
    engine): one look of one seed keeps the worker start-ups few."""
    from strabench.cli._until_decided import adaptive_design, open_variants_after
    from strabench.suite.adaptive import run_until_decided
    from strabench.suite.config import load_suite
    from strabench.suite.executors import run_parallel

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    config = load_suite(suite_file(tmp_path, seeds="[0]", extra=ANALYSIS.replace("max_seeds = 12", "max_seeds = 1")))
    design = adaptive_design(config, [], None, [])
    fake = NoisyEngine()
    outcome = run_until_decided(
        config, tmp_path / "results", design, execute=lambda plan: run_parallel(plan, 2, fit=fake, poll_s=0.05),
        open_variants=open_variants_after(design), plan_options={"check_models": False},
    )
    assert outcome.reason == "max seeds" and outcome.looks_done == 1 and outcome.open_variants == {"stra"}
    assert set(outcome.outcomes[0].attempted.values()) == {"finished"} and len(outcome.outcomes[0].attempted) == 2
    assert read_design(tmp_path / "results" / "t")["rounds"][0]["runs_run"] == 2


def test_a_run_that_did_not_learn_is_a_warning_after_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = NoisyEngine(bonus={"resnet50": -40.0})  # trained scores near 0, untrained 10 + seed
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    result = run(str(suite_file(tmp_path, seeds="[0]")), "--out", str(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "WARNING base-s0-" in text and "did not learn: mAP" in text
    assert "WARNING stra-s0-" not in text

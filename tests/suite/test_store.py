"""The results store: every finished run stays in results.csv and the report, whatever plan came later."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.report.tables import load_suite_results, summarise
from strabench.suite.config import load_suite
from strabench.suite.runner import plan_runs, run_hash

from .fakes import FakeEngine, write_suite


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_seed_0_then_seed_1_keeps_both(tmp_path: Path, engine: FakeEngine) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out), "--seeds", "0").exit_code == 0
    assert invoke("run", str(suite), "--out", str(out), "--seeds", "1").exit_code == 0
    rows = read_csv(out / "t" / "results.csv")
    assert sorted((r["variant"], r["seed"], r["status"]) for r in rows) == [
        ("base", "0", "finished"), ("base", "1", "finished"), ("stra", "0", "finished"), ("stra", "1", "finished")]
    assert len({r["group"] for r in rows}) == 2, "seeds of one setting share a group"
    summary = summarise(load_suite_results(out / "t"))
    assert [(r["variant"], r["seeds"], r["mAP_n"]) for r in summary] == [("base", [0, 1], 2), ("stra", [0, 1], 2)]
    # the paired comparison sees both seeds: +5 on each (the fake's seeds change nothing between
    # the variants: a zero spread, which no t-test can judge)
    stra = summary[1]
    assert stra["mAP_pairs"] == 2 and stra["mAP_diff"] == 5.0 and stra["mAP_verdict"] == "undecided"
    assert stra["mAP_hypotheses"] == 2, "Holm's family: better and worse of the one testable comparison"
    assert any("zero spread" in flag for flag in stra["mAP_flags"])


def test_rows_carry_their_identity(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    text = suite.read_text().replace('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { groups = 4 }')
    suite.write_text(text)
    assert invoke("run", str(suite), "--out", str(tmp_path / "r"), "--device", "cpu").exit_code == 0
    stra = next(r for r in read_csv(tmp_path / "r" / "t" / "results.csv") if r["variant"] == "stra")
    assert stra["overrides"] == '{"groups":4}'
    assert (stra["data"], stra["profile"], stra["train_input"], stra["device"], stra["seed"], stra["data_seed"]) == (
        "synthetic_reid", "quick", "64x32", "cpu", "0", "0")
    assert len(stra["config_hash"]) == 12 and len(stra["group"]) == 12
    assert (stra["mAP_ci_low"], stra["mAP_ci_high"], stra["mAP_n_test"]) == ("53.0", "57.0", "50")
    report = invoke("report", str(tmp_path / "r" / "t")).output
    assert '`{"groups":4}`' in report, "the overrides are shown beside the numbers"


def test_a_profile_change_makes_a_second_group(tmp_path: Path, engine: FakeEngine) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out)).exit_code == 0
    assert invoke("run", str(suite), "--out", str(out), "--profile", "paper").exit_code == 0
    summary = summarise(load_suite_results(out / "t"))
    assert sorted((r["variant"], r["profile"]) for r in summary) == [
        ("base", "paper"), ("base", "quick"), ("stra", "paper"), ("stra", "quick")]
    output = invoke("report", str(out / "t")).output
    assert "profile" in output.splitlines()[next(i for i, l in enumerate(output.splitlines()) if l.startswith("|"))]
    # each variant is compared with the baseline of its own setting
    assert {r["profile"]: r["mAP_vs"] for r in summary if r["variant"] == "stra"} == {"paper": "base", "quick": "base"}


def test_a_failed_run_of_a_new_plan_hides_nothing(tmp_path: Path, engine: FakeEngine) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out), "--seeds", "0").exit_code == 0
    engine.fail_models.add("resnet50_stra")
    assert invoke("run", str(suite), "--out", str(out), "--seeds", "1").exit_code == 1
    rows = {(r["variant"], r["seed"]): r["status"] for r in read_csv(out / "t" / "results.csv")}
    assert rows == {("base", "0"): "finished", ("stra", "0"): "finished", ("base", "1"): "finished", ("stra", "1"): "failed"}
    stra = summarise(load_suite_results(out / "t"))[1]
    assert stra["finished"] == 1 and stra["failed"] == 1 and stra["mAP_mean"] == 55.0


def test_a_refused_command_changes_nothing(tmp_path: Path, engine: FakeEngine) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "r"
    assert invoke("run", str(suite), "--out", str(out)).exit_code == 0
    before = {p: p.read_bytes() for p in (out / "t").rglob("*") if p.is_file()}
    for bad in (["--seeds", "x"], ["--seeds", "3-1"], ["--profile", "fast"], ["--only", "nope"]):
        result = invoke("run", str(suite), "--out", str(out), *bad)
        assert result.exit_code == 2, (bad, result.output)
    assert {p: p.read_bytes() for p in (out / "t").rglob("*") if p.is_file()} == before


def test_seed_ranges(tmp_path: Path, engine: FakeEngine) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "r"
    result = invoke("run", str(suite), "--out", str(out), "--seeds", "0-2,5", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert sorted({r["seed"] for r in json.loads(result.output)}) == [0, 1, 2, 5]


def test_directories_named_by_the_older_hash_are_still_found(tmp_path: Path, engine: FakeEngine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Earlier versions put the latency settings in the run hash; their finished runs are not redone."""
    from strabench.suite import runner

    monkeypatch.setattr(runner, "measure_suite_latency", lambda plan, settings=None: {"settings": settings})  # the hash, not the timing
    suite = write_suite(tmp_path)
    suite.write_text(suite.read_text().replace("accuracy = true", 'accuracy = true\nlatency = { batch = 1, rounds = 1 }'))
    out = tmp_path / "r"
    plan = plan_runs(load_suite(suite), out)
    assert invoke("run", str(suite), "--out", str(out), "--only", "base").exit_code == 0
    spec = plan.runs[0]
    legacy = run_hash(spec.config, spec.measure, legacy=True)
    assert legacy != spec.hash
    shutil.move(out / "t" / spec.run_id, out / "t" / f"{spec.variant}-s{spec.seed}-{legacy}")
    calls = len(engine.calls)
    again = plan_runs(load_suite(suite), out)
    assert again.runs[0].hash == legacy, "the older directory is the run"
    assert invoke("run", str(suite), "--out", str(out), "--only", "base").exit_code == 0
    assert len(engine.calls) == calls, "nothing retrained"


@pytest.mark.parametrize("name", ["quick", "face", "fer"])
def test_committed_results_are_found_by_todays_plans(name: str) -> None:
    """The run directories in results/ are what plan_runs names today (a changed hash would retrain
    them), for every variant the folder has run."""
    root = Path(__file__).resolve().parents[2]
    suite = load_suite(root / "suites" / f"{name}.toml")
    plan = plan_runs(suite, root / "results", seeds=[0], check_models=False)
    ran = {p.name.split("-s0-")[0] for p in (root / "results" / name).glob("*-s0-*") if p.is_dir()}
    assert ran, f"results/{name} has no seed-0 run"
    for spec in plan.runs:
        if spec.variant in ran:
            assert (root / "results" / name / spec.run_id / "result.json").is_file(), spec.run_id


OLD_LAYOUT = """\
suite,variant,model,seed,hash,status,params,macs_paper,macs_fvcore,macs_ptflops,input,latency_ms,images_per_s,mAP,rank1,mAP_untrained,train_time_s,epochs,config,error
quick,resnet50,resnet50,0,fe0cc390fa37,finished,24557120,4053843968,,,256x128,65.4,15.3,24.72,22.0,2.71,210.1,12,resnet50-s0-fe0cc390fa37/config.toml,
quick,stra,resnet50_stra,0,0fe4036ec971,finished,17617920,3165552640,,,256x128,49.4,20.2,30.63,32.0,2.48,178.0,12,stra-s0-0fe4036ec971/config.toml,
"""


def test_a_results_csv_of_the_earlier_layout_still_loads(tmp_path: Path) -> None:
    suite_dir = tmp_path / "quick"
    suite_dir.mkdir()
    (suite_dir / "results.csv").write_text(OLD_LAYOUT)
    results = load_suite_results(suite_dir)
    assert [r["run_id"] for r in results.rows] == ["resnet50-s0-fe0cc390fa37", "stra-s0-0fe4036ec971"]
    summary = summarise(results)
    assert [(r["variant"], r["mAP_mean"], r["mAP_n"]) for r in summary] == [("resnet50", 24.72, 1), ("stra", 30.63, 1)]
    assert summary[1]["mAP_verdict"] == "undecided" and summary[1]["mAP_pairs"] == 1
    output = invoke("report", str(suite_dir), "--no-paper").output
    assert "30.63" in output and "not interleaved" in " ".join(output.split())

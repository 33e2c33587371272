"""Statistics count what they claim: hostile edits of a real results folder (the committed
results/quick, copied; the tests follow whatever seeds it holds) must not change a number silently. A copied run folder does not narrow
an interval, a NaN metric is not counted as a seed, merged copies that disagree are flagged, a
zero spread is said, P(variant > baseline) is computed as documented, and a trained score at or
below the untrained one is a warning."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from strabench.report import build_report
from strabench.report.tables import load_suite_results, merge_results, summarise

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "results" / "quick"


@pytest.fixture
def quick(tmp_path: Path) -> Path:
    copy = tmp_path / "a" / "quick"
    shutil.copytree(QUICK, copy, ignore=shutil.ignore_patterns("plots", "report.md", "checkpoint*"))
    return copy


def run_dir(suite: Path, variant: str, seed: int) -> Path:
    return next(p for p in suite.glob(f"{variant}-s{seed}-*") if p.name.count("-") == 2 and not p.name.endswith(".bak"))


def record(suite_dirs: list[Path], variant: str) -> dict:
    (results,) = merge_results(load_suite_results(d) for d in suite_dirs)
    summary = summarise(results, paper=False)
    return next(r for r in summary if r["variant"] == variant), summary


def text(suite_dirs: list[Path], tmp_path: Path) -> str:
    return " ".join(build_report(suite_dirs, plots=False, out=tmp_path / "report.md").text.split())


def csv_values(variant: str) -> dict[int, float]:
    """The committed runs' mAP by seed (the tests follow whatever seeds results/quick holds)."""
    with open(QUICK / "results.csv", newline="") as handle:
        return {int(r["seed"]): float(r["mAP"]) for r in csv.DictReader(handle)
                if r["variant"] == variant and r["status"] == "finished" and r["mAP"]}


SEEDS = sorted(csv_values("stra"))


def test_a_copied_run_folder_does_not_narrow_the_interval(quick: Path, tmp_path: Path) -> None:
    before, _ = record([quick], "stra")
    source = run_dir(quick, "stra", SEEDS[0])
    shutil.copytree(source, source.with_name(source.name + ".bak"))
    after, summary = record([quick], "stra")
    n = len(SEEDS)
    assert (after["mAP_n"], after["finished"], after["runs"]) == (n, n, n), "one per seed, however many folders"
    assert (after["mAP_ci_low"], after["mAP_ci_high"]) == (before["mAP_ci_low"], before["mAP_ci_high"])
    assert after["mAP_pairs"] == before["mAP_pairs"]
    assert any(".bak" in p and "counted once" in p for p in summary.problems)
    assert "not counted (a second folder of this seed)" in text([quick], tmp_path)


def test_a_nan_metric_is_not_counted_and_the_row_says_so(quick: Path, tmp_path: Path) -> None:
    broken = [SEEDS[1], SEEDS[-1]]
    before, _ = record([quick], "stra")
    for seed in broken:
        path = run_dir(quick, "stra", seed) / "result.json"
        result = json.loads(path.read_text())
        result["metrics"]["mAP"] = float("nan") if seed == broken[0] else float("inf")
        path.write_text(json.dumps(result))  # NaN / Infinity literals, as json.dumps writes them
    stra, _ = record([quick], "stra")
    values = csv_values("stra")
    kept = [values[s] for s in SEEDS if s not in broken]
    n = len(SEEDS)
    assert stra["mAP_n"] == n - 2 and stra["mAP_mean"] == pytest.approx(sum(kept) / (n - 2))
    assert stra["mAP_missing"] == broken and stra["mAP_pairs"] == before["mAP_pairs"] - 2
    report = text([quick], tmp_path)
    assert f"{n}/{n} (mAP from {n - 2})" in report
    assert f"2 of {n} finished run(s) have no finite mAP (seed(s) {broken[0]}, {broken[1]})" in report


def test_merged_copies_that_disagree_are_flagged(quick: Path, tmp_path: Path) -> None:
    other = tmp_path / "b" / "quick"
    shutil.copytree(quick, other)
    path = run_dir(other, "stra", SEEDS[0]) / "result.json"
    result = json.loads(path.read_text())
    result["metrics"]["mAP"] = 12.5
    path.write_text(json.dumps(result))
    stra, _ = record([quick, other], "stra")
    assert stra["mAP_by_seed"][SEEDS[0]] == pytest.approx(csv_values("stra")[SEEDS[0]]), "the first copy's number is kept..."
    report = text([quick, other], tmp_path)
    assert f"WARNING merged copies disagree: run `stra-s{SEEDS[0]}-" in report and "12.50" in report, "...and the disagreement said"
    assert "copies are not the same run" in report


def test_zero_spread_is_said(quick: Path, tmp_path: Path) -> None:
    for seed in SEEDS:
        path = run_dir(quick, "stra", seed) / "result.json"
        result = json.loads(path.read_text())
        result["metrics"]["mAP"] = 30.0
        path.write_text(json.dumps(result))
    report = text([quick], tmp_path)
    assert "[30.00, 30.00] (zero spread)" in report
    assert f"`stra`: identical mAP on all {len(SEEDS)} seeds (zero spread)" in report


def test_a_constant_paired_difference_is_not_a_verdict(quick: Path, tmp_path: Path) -> None:
    base = csv_values("resnet50")
    for seed in (s for s in SEEDS if s in base):
        for variant, score in (("resnet50", base[seed]), ("stra", base[seed] + 2.0)):  # the seed changes nothing between them
            path = run_dir(quick, variant, seed) / "result.json"
            result = json.loads(path.read_text())
            result["metrics"]["mAP"] = score
            path.write_text(json.dumps(result))
            (path.parent / "per_item.csv").unlink(missing_ok=True)  # its items no longer add up to the edited score
    stra, _ = record([quick], "stra")
    assert stra["mAP_verdict"] == "undecided"
    assert any("zero spread" in f for f in stra["mAP_flags"])


def test_probability_of_improvement_is_computed_as_documented(quick: Path) -> None:
    """Defined over all pairs of runs (not only paired seeds): drop two baseline seeds; the
    estimate still uses every stra run against every remaining baseline run."""
    dropped = sorted(csv_values("resnet50"))[-2:]
    for seed in dropped:
        shutil.rmtree(run_dir(quick, "resnet50", seed))
    stra, _ = record([quick], "stra")
    a, b = csv_values("stra"), {s: v for s, v in csv_values("resnet50").items() if s not in dropped}
    wins = sum((x > y) + 0.5 * (x == y) for x in a.values() for y in b.values())
    assert stra["mAP_p_improve"] == pytest.approx(wins / (len(a) * len(b)))
    doc = " ".join((REPO / "docs" / "statistics.md").read_text().split())
    assert "over all pairs of their runs" in doc and "not only the paired seeds" in doc


def test_a_network_that_did_not_learn_is_a_warning(quick: Path, tmp_path: Path) -> None:
    path = run_dir(quick, "stra", SEEDS[1]) / "result.json"
    result = json.loads(path.read_text())
    result["metrics"]["mAP"] = result["metrics_untrained"]["mAP"] - 0.2
    path.write_text(json.dumps(result))
    report = text([quick], tmp_path)
    assert f"WARNING `stra`: seed(s) {SEEDS[1]} did not learn (mAP at or below untrained)" in report
    assert "finished, did not learn" in report

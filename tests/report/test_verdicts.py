"""The report's verdicts, noise split and seed plans on results folders written by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from strabench.report import build_report
from strabench.report.tables import load_suite_results, summarise, verdict_lines

from report.results_factory import item_scores, write_plan, write_run

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "results" / "quick"


def per_item_suite(tmp_path: Path, seeds: int = 4, shift: float = 2.0) -> Path:
    """Two variants, ``seeds`` seeds, 60 test items in 30 clusters, per-item files."""
    rng = np.random.default_rng(0)
    suite = tmp_path / "t"
    write_plan(suite, ["base", "stra"], equivalence_margin={"mAP": 1.0}, min_effect={"mAP": 2.0})
    difficulty = rng.uniform(10, 90, 60)
    for seed in range(seeds):
        seed_shift = rng.normal(0, 1.5)
        for variant, bonus in (("base", 0.0), ("stra", shift)):
            items = item_scores(rng, difficulty, seed_shift + bonus + rng.normal(0, 0.8), noise=8.0)
            write_run(suite, variant, seed, {k: float(v.mean()) for k, v in items.items()}, items=items)
    return suite


def test_noise_split_from_per_item_scores_matches_its_definition(tmp_path: Path) -> None:
    suite = per_item_suite(tmp_path)
    results = load_suite_results(suite)
    summary = summarise(results, paper=False)
    stra = next(r for r in summary if r["variant"] == "stra")
    # by hand from the files: the runs' means, their SD over seeds; each run's cluster variance
    runs = []
    for seed in range(4):
        with open(suite / f"stra-s{seed}-{seed:012d}" / "per_item.csv", newline="") as handle:
            records = list(csv.DictReader(handle))
        runs.append(([float(r["mAP"]) for r in records], [r["cluster"] for r in records]))
    means = [sum(v) / len(v) for v, _ in runs]
    assert stra["mAP_seed_sd"] == pytest.approx(np.std(means, ddof=1))
    within = []
    for values, clusters in runs:
        totals: dict[str, list[float]] = {}
        for v, c in zip(values, clusters):
            totals.setdefault(c, []).append(v)
        mean, n, count = sum(values) / len(values), len(values), len(totals)
        within.append(count / (count - 1) * sum((sum(t) - len(t) * mean) ** 2 for t in totals.values()) / n**2)
    assert stra["mAP_test_se_one_run"] == pytest.approx(math.sqrt(sum(within) / 4))
    assert stra["mAP_diff_noise_items"] == 60 and stra["mAP_diff_noise_clusters"] == 30
    text = build_report([suite], plots=False, out=tmp_path / "r.md").text
    assert "### Where the noise comes from (mAP)" in text and "stra − base" in text


def test_each_per_item_file_is_read_once_per_loaded_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.report import verdicts

    suite = per_item_suite(tmp_path, seeds=3)
    reads: list[Path] = []
    real = verdicts.read_per_item
    monkeypatch.setattr(verdicts, "read_per_item", lambda path, metrics: reads.append(path) or real(path, metrics))
    results = load_suite_results(suite)
    first = summarise(results, paper=False)
    assert len(reads) == 6 and len(set(reads)) == 6  # 2 variants x 3 seeds
    again = summarise(results, paper=True)  # the tables after the plots: the same files
    assert len(reads) == 6
    for a, b in zip(first, again, strict=True):  # the same comparisons (NaN-safe: as JSON)
        keys = sorted(k for k in a if "_diff" in k or "verdict" in k or "noise" in k)
        assert keys and json.dumps([a[k] for k in keys], default=str) == json.dumps([b[k] for k in keys], default=str)
    summarise(load_suite_results(suite), paper=False)  # loaded again (the files may have changed): read again
    assert len(reads) == 12


def test_runs_without_per_item_scores_fall_back_and_say_so(tmp_path: Path) -> None:
    suite = tmp_path / "t"
    write_plan(suite, ["base", "stra"])
    for seed, (a, b) in enumerate([(20.0, 22.0), (21.0, 24.5), (19.5, 21.0)]):
        write_run(suite, "base", seed, {"mAP": a})
        write_run(suite, "stra", seed, {"mAP": b})
    text = build_report([suite], plots=False, out=tmp_path / "r.md").text
    assert "not split (no per-item scores)" in text
    assert "### Where the noise comes from" not in text
    assert "stra vs base, mAP:" in text, "the verdicts stand on seed-level statistics"


def test_a_per_item_file_that_does_not_add_up_is_named_and_left_out(tmp_path: Path) -> None:
    suite = per_item_suite(tmp_path, seeds=3)
    broken = suite / "stra-s1-000000000001" / "per_item.csv"
    rows = broken.read_text().splitlines()
    rows[1] = rows[1].rsplit(",", 2)[0] + ",99.5,100.0"  # one query's AP changed: the mean no longer is the run's mAP
    broken.write_text("\n".join(rows) + "\n")
    summary = summarise(load_suite_results(suite), paper=False)
    assert any("per item averages" in p and "stra-s1" in p for p in summary.problems)
    stra = next(r for r in summary if r["variant"] == "stra")
    assert stra["mAP_noise"] == "no per-item scores", "a group with an unusable file is not split"


def test_verdict_fields_agree_with_scipy(tmp_path: Path) -> None:
    suite = tmp_path / "t"
    write_plan(suite, ["base", "stra", "other"], min_effect={"mAP": 2.0})
    diffs = {"stra": [3.1, 2.2, 4.0, 3.5, 2.8, 3.3], "other": [1.5, -2.0, 2.4, -0.8, 0.2, 0.6]}
    for seed in range(6):
        write_run(suite, "base", seed, {"mAP": 30.0 + seed})
        for variant in diffs:
            write_run(suite, variant, seed, {"mAP": 30.0 + seed + diffs[variant][seed]})
    summary = summarise(load_suite_results(suite), paper=False)
    stra = next(r for r in summary if r["variant"] == "stra")
    p = sps.ttest_1samp(diffs["stra"], 0.0, alternative="greater").pvalue
    assert stra["mAP_p_better"] == pytest.approx(p)
    assert stra["mAP_hypotheses"] == 4 and stra["mAP_p_holm"] == pytest.approx(4 * p)
    assert stra["mAP_verdict"] == "better"
    other = next(r for r in summary if r["variant"] == "other")
    assert other["mAP_verdict"] == "undecided"
    sd = float(np.std(diffs["other"], ddof=1))
    level = 0.05 / 4
    need = other["mAP_need_seeds"]
    power = TTestPower()
    assert power.power(effect_size=2.0 / sd, nobs=need, alpha=level, alternative="larger") >= 0.8
    assert power.power(effect_size=2.0 / sd, nobs=need - 1, alpha=level, alternative="larger") < 0.8
    assert other["mAP_need_seconds"] == pytest.approx((need - 6) * (126.0 + 126.0)), "training + evaluation, both variants"
    line = verdict_lines(load_suite_results(suite))[1]
    assert line.startswith("other vs base, mAP: undecided after 6 seeds") and f"about {need} seeds ({need - 6} more" in line


def test_an_undecided_comparison_with_its_planned_seeds_says_what_is_missing(tmp_path: Path) -> None:
    suite = tmp_path / "t"
    write_plan(suite, ["base", "other"], min_effect={"mAP": 2.0})
    for seed, diff in enumerate([0.5, -1.0, 1.2, -0.4, 0.1, 0.3]):
        write_run(suite, "base", seed, {"mAP": 30.0 + seed})
        write_run(suite, "other", seed, {"mAP": 30.0 + seed + diff})
    line = verdict_lines(load_suite_results(suite))[0]
    assert "seeds planned for 80% power are run: the difference is likely below 2" in line
    assert "without an equivalence_margin" in line


def test_one_seed_with_a_pilot_gives_an_honest_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's situation: one seed, StRA below ResNet-50; the line says undecided and what
    would decide, with the committed results/quick as the pilot."""
    monkeypatch.chdir(REPO)  # the pilot path is relative to where strabench runs, like --out
    suite = tmp_path / "demo"
    write_plan(suite, ["resnet50", "stra"], name="demo", pilot="results/quick",
               equivalence_margin={"mAP": 2.0}, min_effect={"mAP": 2.0})
    write_run(suite, "resnet50", 0, {"mAP": 9.94}, name="demo", untrained={"mAP": 2.71})
    write_run(suite, "stra", 0, {"mAP": 8.88}, name="demo", untrained={"mAP": 2.48})
    line = verdict_lines(load_suite_results(suite))[0]
    with open(QUICK / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by = {(r["variant"], int(r["seed"])): float(r["mAP"]) for r in rows if r["status"] == "finished" and r["mAP"]}
    sd = float(np.std([by["stra", s] - by["resnet50", s] for v, s in by if v == "stra" and ("resnet50", s) in by], ddof=1))
    level = 0.05 / 3  # three hypotheses: better, worse, equivalent within ±2
    detect = math.ceil(TTestPower().solve_power(effect_size=2.0 / sd, alpha=level, power=0.8, alternative="larger"))

    def tost_power(n: int) -> float:  # each one-sided test rejects with P(T_{n-1, 2 sqrt(n)/sd} > t_crit); both
        one = sps.nct.sf(sps.t.ppf(1 - level, n - 1), n - 1, 2.0 * math.sqrt(n) / sd)
        return 2 * one - 1

    equivalence = next(n for n in range(2, 1000) if tost_power(n) >= 0.8)
    need = max(detect, equivalence)
    assert line.startswith("stra vs resnet50, mAP: undecided after 1 seed (-1.06, one seed has no interval)")
    assert f"about {need} seeds ({need - 1} more" in line
    assert "would decide whether the difference is 0 (equivalent within ±2) or 2+" in line
    amount, unit = line.split("~")[1].split(")")[0].split(" ")
    hours = float(amount) / (60 if unit == "CPU-minutes" else 1)
    assert unit in ("CPU-minutes", "CPU-hours")
    assert hours == pytest.approx((need - 1) * (126 + 126) / 3600, abs=0.05), "this suite's own run times (training + evaluation)"


def test_did_not_learn_is_a_warning_everywhere(tmp_path: Path) -> None:
    suite = tmp_path / "t"
    write_plan(suite, ["base", "stra"])
    for seed, (a, b) in enumerate([(4.99, 5.1), (5.2, 5.0), (4.8, 5.3)]):
        write_run(suite, "base", seed, {"mAP": a, "rank1": 0.0}, untrained={"mAP": 5.74, "rank1": 0.0})
        write_run(suite, "stra", seed, {"mAP": b, "rank1": 1.0}, untrained={"mAP": 5.71, "rank1": 0.0})
    text = build_report([suite], plots=False, out=tmp_path / "r.md").text
    assert "(did not learn)" in text and "WARNING `base` did not learn" in text
    line = verdict_lines(load_suite_results(suite))[0]
    assert "WARNING" in line and "base did not learn" in line

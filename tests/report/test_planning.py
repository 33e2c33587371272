"""`run --dry-run` states the seeds each comparison needs and their cost, planned from a pilot:
the committed results/quick (7 seeds x 3 variants, no per-item files) for suites/quick.toml."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from strabench.cli import app
from strabench.report.planning import plan_seeds
from strabench.report.sequential import sequential_design
from strabench.suite.config import load_suite

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "results" / "quick"


def pilot_numbers(variant: str) -> tuple[float, float, float, int]:
    """From the pilot's files: the SD of the paired mAP difference, one run's seconds (training
    + evaluation) of the variant and of resnet50, and the number of pairs."""
    with open(QUICK / "results.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "finished" and r["mAP"]]
    score = {(r["variant"], int(r["seed"])): float(r["mAP"]) for r in rows}
    seeds = [s for v, s in score if v == variant and ("resnet50", s) in score]
    sd = float(np.std([score[variant, s] - score["resnet50", s] for s in seeds], ddof=1))

    def seconds(name: str) -> float:
        times = []
        for r in rows:
            if r["variant"] == name:
                result = json.loads((QUICK / r["run_id"] / "result.json").read_text())
                times.append(result["train_time_s"] + result["eval_time_s"])
        return sum(times) / len(times)

    return sd, seconds(variant), seconds("resnet50"), len(seeds)


def seeds_for(sd: float, effect: float, margin: float, level: float) -> int:
    """By hand: the noncentral t's power of the one-sided test, and TOST's lower bound."""
    def one_sided(n: int, delta: float) -> float:
        return float(sps.nct.sf(sps.t.ppf(1 - level, n - 1), n - 1, delta * math.sqrt(n) / sd))

    detect = next(n for n in range(2, 2000) if one_sided(n, effect) >= 0.8)
    equivalence = next(n for n in range(2, 2000) if 2 * one_sided(n, margin) - 1 >= 0.8)
    return max(detect, equivalence)


def test_dry_run_plans_the_quick_suite_from_its_pilot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the suite names its pilot as results/quick
    result = CliRunner().invoke(app, ["run", "suites/quick.toml", "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "12 pending" in text and "seeds needed" in text
    level = 0.05 / 6  # two comparisons x (better, worse, equivalent within ±2)
    with open(QUICK / "results.csv", newline="") as handle:
        piloted = {r["variant"] for r in csv.DictReader(handle) if r["status"] == "finished"}
    assert "stra" in piloted
    for variant in sorted(piloted & {"local", "stra"}):  # the variants the pilot has run
        sd, mine, base, pairs = pilot_numbers(variant)
        seeds = seeds_for(sd, 2.0, 2.0, level)
        assert f"{variant} vs resnet50, mAP: undecided; SD of the difference {sd:.2f} (pilot results/quick ({pairs} pairs))" in text
        hours = seeds * (mine + base) / 3600
        assert f"; {seeds} more, about {hours:.1f} CPU-hours" in text


def test_until_decided_plans_at_the_last_looks_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_suite("suites/quick.toml")
    design = sequential_design(4, 10, 0.05)
    plans = plan_seeds(config, tmp_path / "quick", design=design)
    sd, _, _, _ = pilot_numbers("stra")
    stra = next(p for p in plans if p.variant == "stra")
    assert stra.level == pytest.approx(design.alphas[-1] / 6)
    assert stra.seeds == seeds_for(sd, 2.0, 2.0, design.alphas[-1] / 6)
    result = CliRunner().invoke(app, ["run", "suites/quick.toml", "--out", str(tmp_path), "--dry-run", "--until-decided"])
    text = " ".join(result.output.split())
    assert "looks after 4, 6, 8, 10 seeds" in text and "exceeds the design's 10" in text

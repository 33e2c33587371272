"""A real suite end to end: the real engine, real measuring and latency, report and viz.

Tiny on purpose (28 FER training images of 16x16, one epoch): it checks that the pieces fit
together, not that anything learns. The numbers it checks are recomputed independently.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from strabench.cli import app

SUITE = """\
name = "tiny"
description = "FER baseline vs StRA, tiny"
paper_table = "Sec. 3.2 (FER2013)"
data = "synthetic_expressions"
profile = "quick"
seeds = [0]

[train.quick]
epochs = 1
batch_size = 14
input_size = [16, 16]
data_sizes = { num_train = 28, num_public_test = 14, num_private_test = 14 }

[measure]
params = true
macs = ["paper", "fvcore"]
input = "16x16"
latency = { batch = 2, min_run_time = 0.05, threads = 1 }
accuracy = true

[[variants]]
name = "baseline"
model = "fer_resnet"

[[variants]]
name = "stra"
model = "fer_resnet_stra"
"""


@pytest.mark.slow
def test_real_suite_run_report_and_viz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.measure import memory
    from strabench.measure.flops import count_macs
    from strabench.measure.params import count_params
    from strabench.registry import create_model

    # every meta forward of the memory check: (model class, body parameters, input shape)
    measured = []
    measure = memory._measure

    def spy(model, shape):
        body = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("classifier."))
        measured.append((type(model).__name__, body, tuple(shape)))
        return measure(model, shape)

    monkeypatch.setattr(memory, "_measure", spy)
    monkeypatch.setattr(memory, "_MEASURED", OrderedDict())

    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    out = tmp_path / "results"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(suite), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # a run's own check before training is the plan's, answered by the memo: no model is run
    # on the meta device twice for one input shape (the training-only classifier aside)
    assert measured and len(measured) == len(set(measured)), measured

    suite_dir = out / "tiny"
    with (suite_dir / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["variant"], r["status"]) for r in rows] == [("baseline", "finished"), ("stra", "finished")]
    for row in rows:
        model = create_model(row["model"], input_size=(16, 16))
        assert int(row["params"]) == count_params(model)
        assert int(row["macs_paper"]) == count_macs(model, (1, 16, 16), "paper").total
        assert int(row["macs_fvcore"]) > 0
        for metric in ("val_acc", "test_acc"):
            assert 0.0 <= float(row[metric]) <= 100.0
            low, high = float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"])
            assert low <= float(row[metric]) <= high, "the test-set interval holds the score"
            assert int(row[f"{metric}_n_test"]) == 14, "14 PublicTest / PrivateTest images"
        run_dir = suite_dir / f"{row['variant']}-s0-{row['hash']}"
        result_json = json.loads((run_dir / "result.json").read_text())
        assert result_json["status"] == "finished" and result_json["epochs"] == 1
        assert float(row["test_acc"]) == pytest.approx(result_json["metrics"]["test_acc"])
        env = json.loads((run_dir / "env.json").read_text())
        assert "git_commit" in env and "torch" in env and env["device"] == "cpu"
        assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "metrics.jsonl").is_file()

    # latency: the suite's variants timed against its baseline (the first variant), interleaved
    timing = json.loads((suite_dir / "latency.json").read_text())
    assert timing["baseline"] == "baseline" and set(timing["variants"]) == {"baseline", "stra"}
    assert timing["variants"]["baseline"]["ratio_to_baseline"] == 1.0
    stra_timing = timing["variants"]["stra"]
    assert len(stra_timing["ratio_rounds"]) == 3 and stra_timing["ratio_to_baseline"] > 0 and stra_timing["median_ms"] > 0
    assert isinstance(stra_timing["noisy"], bool)

    # a second run skips both (finished), retraining nothing
    stamps = {p: p.stat().st_mtime_ns for p in suite_dir.glob("*/result.json")}
    again = runner.invoke(app, ["run", str(suite), "--out", str(out), "--device", "cpu"])
    assert again.exit_code == 0 and "0 run(s) to do, 2 already finished" in again.output
    assert {p: p.stat().st_mtime_ns for p in suite_dir.glob("*/result.json")} == stamps

    report = runner.invoke(app, ["report", str(suite_dir)])
    assert report.exit_code == 0, report.output
    assert "test_acc (%)" in report.output and "test_acc paper" in report.output
    assert "| 73.2 " not in report.output, "synthetic data at 16x16 is not the paper's setting: no paper number beside ours"
    assert "latency ratio to baseline" in report.output
    assert (suite_dir / "plots" / "training_curves.png").is_file()

    stra = next(r for r in rows if r["variant"] == "stra")
    picture = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((48, 48)) * 255).astype("uint8")).save(picture)
    viz = runner.invoke(app, [
        "viz", "fer_resnet_stra", "--checkpoint", str(suite_dir / f"stra-s0-{stra['hash']}" / "checkpoint.pt"),
        "--image", str(picture), "--out", str(tmp_path / "viz"), "--input", "16x16",
    ])
    assert viz.exit_code == 0, viz.output
    assert len(list((tmp_path / "viz").glob("*.png"))) == 3  # one per StRA block of the last stage

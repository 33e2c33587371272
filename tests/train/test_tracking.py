"""metrics.csv and TensorBoard events of a training run, read back with csv and TensorBoard's own reader.

The reference is metrics.jsonl and result.json (what the engine records), parsed here."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest

from strabench.train import tracking
from strabench.train.engine import fit

_spec = importlib.util.spec_from_file_location("strabench_train_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
make_tiny_config = _conftest.make_tiny_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tracked") / "run"
    fit(make_tiny_config("fer", epochs=3, eval_every=1), out)
    return out


def test_metrics_csv_is_metrics_jsonl_as_a_table(finished_run: Path) -> None:
    records = jsonl(finished_run / "metrics.jsonl")
    result = json.loads((finished_run / "result.json").read_text())
    with open(finished_run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for row, record in zip(rows[1:], records):
        assert float(row["loss"]) == pytest.approx(record["loss"], rel=1e-12)
        assert float(row["lr"]) == pytest.approx(record["lr"], rel=1e-12)
        for group in ("eval", "eval_subset"):  # the full test set (last epoch), the fixed subset (each epoch)
            for metric, value in record.get(group, {}).items():
                assert float(row[f"{group}/{metric}"]) == pytest.approx(value, rel=1e-12)
    untrained = rows[0]
    assert untrained["loss"] == "" and {k: float(untrained[f"eval/{k}"]) for k in result["metrics_untrained"]} == pytest.approx(result["metrics_untrained"])


def test_tensorboard_has_loss_lr_and_the_evaluation_curves(finished_run: Path) -> None:
    records = jsonl(finished_run / "metrics.jsonl")
    result = json.loads((finished_run / "result.json").read_text())
    scalars = events(finished_run)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert [v for _, v in scalars["train/lr"]] == pytest.approx([r["lr"] for r in records], rel=1e-6)
    for metric in result["metrics"]:
        curve = scalars[f"eval/{metric}"]  # the full test set: before training and after the last epoch
        assert [step for step, _ in curve] == [0, 3]
        assert curve[0][1] == pytest.approx(result["metrics_untrained"][metric], rel=1e-6)
        assert curve[-1][1] == pytest.approx(result["metrics"][metric], rel=1e-6)
        subset = scalars[f"eval_subset/{metric}"]  # the fixed subset, every epoch, under its own name
        assert [step for step, _ in subset] == [1, 2, 3]
        assert [v for _, v in subset] == pytest.approx([r["eval_subset"][metric] for r in records], rel=1e-6)


def test_a_resumed_run_hides_what_a_killed_attempt_wrote_past_its_checkpoint(tmp_path: Path) -> None:
    """Attempt 1 logs epochs 1-2 and dies; its epoch-2 checkpoint is lost (the previous one, epoch
    1, is the last good). The resume retrains epoch 2: TensorBoard must show each epoch once,
    the new epoch 2, as metrics.jsonl does."""
    from strabench.train.checkpoint import sidecar_path

    class Die:
        def on_epoch_end(self, epoch: int, record: dict) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    cfg = make_tiny_config("fer", epochs=3, eval_every=1)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, out, progress=Die())
    first_attempt = events(out)["train/loss"]
    assert [step for step, _ in first_attempt] == [1, 2]
    for path in (out / "checkpoint.pt", sidecar_path(out / "checkpoint.pt")):
        path.unlink()
    fit(cfg, out)
    records = jsonl(out / "metrics.jsonl")
    loss = events(out)["train/loss"]
    assert [step for step, _ in loss] == [1, 2, 3]
    assert [v for _, v in loss] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    with open(out / "metrics.csv", newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [0, 1, 2, 3]


def test_without_tensorboard_one_warning_line_and_the_csv(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(tracking, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="strabench.tracking"):
        fit(make_tiny_config("fer", epochs=2), tmp_path / "run")
    messages = [r.getMessage() for r in caplog.records if r.name == "strabench.tracking"]
    assert messages == ["tensorboard is not installed: no event files, metrics.csv only (pip install tensorboard)"]
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_nested_and_labelled_entries_are_written_as_they_come() -> None:
    record = {"epoch": 2, "loss": 0.5, "frozen": False, "eval": {"mAP": 10.0, "subset": {"mAP": 9.0, "label": "fixed 64"}}}
    assert tracking.scalars(record) == {"train/loss": 0.5, "eval/mAP": 10.0, "eval/subset/mAP": 9.0}
    text = tracking.csv_rows([record, {"epoch": 3, "loss": 0.25, "nan": float("nan")}])
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[0]["eval/subset/label"] == "fixed 64" and rows[1]["eval/mAP"] == ""
    assert "nan" not in tracking.scalars({"nan": float("nan")})


def test_periodic_evaluation_changes_no_result(tmp_path: Path) -> None:
    """Evaluating every epoch only adds curve points: the weights and the final scores are those
    of a run evaluated at the end only (what lets the planner keep runs made without it)."""
    import torch

    from strabench.train.saved import read_weights

    every = fit(make_tiny_config("reid", epochs=2, eval_every=1), tmp_path / "every")
    end = fit(make_tiny_config("reid", epochs=2, eval_every=0), tmp_path / "end")
    assert every["metrics"] == end["metrics"] and every["final_loss"] == end["final_loss"]
    a, _, _ = read_weights(tmp_path / "every" / "checkpoint.pt")
    b, _, _ = read_weights(tmp_path / "end" / "checkpoint.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    every_log = jsonl(tmp_path / "every" / "metrics.jsonl")
    assert [("eval_subset" in r, "eval" in r) for r in every_log] == [(True, False), (True, True)]
    assert [("eval" in r) for r in jsonl(tmp_path / "end" / "metrics.jsonl")] == [False, True]

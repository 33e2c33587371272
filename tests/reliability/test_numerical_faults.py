"""Guarantee 6 -- a diverging run fails loudly, keeps its last good checkpoint, and the suite goes on.

The fault is injected through the suite file alone: a variant whose learning rate is multiplied
by 1e30 after the first epoch (``milestones = [1]``, ``lr_gamma = 1e30``) trains epoch 1 normally
and produces a NaN loss in epoch 2. The suite lists it first, so the other variant must still
run after it. `strabench report` must show the diverged variant as "failed", never as a number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .helpers import invoke, no_exception, read_csv, write_suite

VARIANTS = (
    ("diverges", "mobilenetv2_100", "train = { lr_gamma = 1e30, milestones = [1] }"),
    ("mnv2", "mobilenetv2_100", ""),
)


@pytest.fixture(scope="module")
def diverged_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nan")
    suite = write_suite(root, variants=VARIANTS)
    result = invoke(["run", suite, "--out", root / "results"])
    no_exception(result)
    return root / "results" / "tiny", result


def _run_dir(suite_dir: Path, variant: str) -> Path:
    return next(p for p in suite_dir.iterdir() if p.is_dir() and p.name.startswith(f"{variant}-s0-"))


@pytest.mark.slow
def test_nan_loss_fails_the_run_with_a_clear_reason_and_the_suite_continues(diverged_suite) -> None:
    suite_dir, result = diverged_suite
    assert result.exit_code == 1, result.stdout  # 1 = some run failed (not a crash, not bad input)
    assert re.search(r"diverges-s0-\w+: NumericalError: training diverged at epoch 2", result.stdout), result.stdout
    failed = json.loads((_run_dir(suite_dir, "diverges") / "result.json").read_text())
    assert failed["status"] == "failed" and failed["error_type"] == "NumericalError"
    assert "loss is nan" in failed["reason"] or "NaN/inf" in failed["reason"], failed["reason"]
    assert "epoch 1" in failed["reason"]  # names the last good checkpoint

    rows = {r["variant"]: r for r in read_csv(suite_dir / "results.csv")}
    assert rows["diverges"]["status"] == "failed" and "NumericalError" in rows["diverges"]["error"]
    assert rows["diverges"]["mAP"] == "" and rows["diverges"]["rank1"] == ""
    assert rows["mnv2"]["status"] == "finished" and 0.0 <= float(rows["mnv2"]["mAP"]) <= 100.0
    finished = json.loads((_run_dir(suite_dir, "mnv2") / "result.json").read_text())
    assert finished["status"] == "finished"


@pytest.mark.slow
def test_last_good_checkpoint_is_kept_and_finite(diverged_suite) -> None:
    import torch

    from strabench.train.checkpoint import load_latest_good

    suite_dir, _ = diverged_suite
    run = _run_dir(suite_dir, "diverges")
    state, used, warnings = load_latest_good(run)
    assert used.name == "checkpoint.pt" and warnings == []
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["epoch"] for r in lines] == [1]  # the diverged epoch is not logged as if it were fine
    assert all(isinstance(r["loss"], float) and r["loss"] == r["loss"] for r in lines)


@pytest.mark.slow
def test_report_shows_the_diverged_variant_as_failed_not_a_number(diverged_suite) -> None:
    suite_dir, _ = diverged_suite
    report = invoke(["report", suite_dir, "--no-plots", "--out", suite_dir.parent / "report.md"])
    no_exception(report)
    assert report.exit_code == 0, report.stdout + report.stderr
    text = (suite_dir.parent / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("|") and "mAP" in line)
    columns = [c.strip() for c in header.strip("|").split("|")]
    row = next(line for line in text.splitlines() if line.startswith("|") and "diverges" in line)
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|"))))
    ours = [k for k in cells if k.startswith(("mAP", "rank")) and k.endswith("(%)")]
    assert ours, (columns, row)
    for name in ours:
        assert cells[name] == "failed", f"{name}: {cells[name]!r} in {row}"
    for name in (k for k in cells if "untrained" in k or k.startswith("Δ")):
        assert not re.search(r"\d", cells[name]), f"{name}: {cells[name]!r} is a number for a failed run"
    good = next(line for line in text.splitlines() if line.startswith("|") and "| mnv2 " in line)
    assert re.search(r"\d", good)

    as_json = invoke(["report", suite_dir, "--json"])
    no_exception(as_json)
    records = {r["variant"]: r for r in json.loads(as_json.stdout)}
    assert records["diverges"]["failed"] == 1
    numbers = {k: v for k, v in records["diverges"].items() if k.startswith(("mAP_", "rank")) and k.endswith(("_mean", "_std", "_delta"))}
    assert numbers and all(v is None for v in numbers.values()), numbers


@pytest.mark.slow
def test_an_lr_that_overflows_the_optimizer_is_divergence_with_the_last_good_checkpoint_kept(tmp_path: Path) -> None:
    """lr 1e300 is a finite number, but Adam's step size overflows float32: the step raised a
    RuntimeError traceback. It is divergence like NaN: one line naming the epoch and the last good
    checkpoint, which stays verified and finite."""
    import torch

    from strabench.train.checkpoint import load_latest_good

    from .helpers import TINY_TRAIN_ARGS, assert_error_reported

    run = tmp_path / "run"
    result = invoke(["train", "mobilenetv2_100", *TINY_TRAIN_ARGS, "--set", "lr_gamma=1e300", "--set", "milestones=[1]",
                     "--out", run])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    line = assert_error_reported(result.stderr, "diverged at epoch 2", "overflow", "epoch 1")
    assert "Traceback" not in line
    state, _used, _warnings = load_latest_good(run)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())

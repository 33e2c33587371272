"""Guarantee 4 -- corrupt or stale checkpoints are detected, never silently used.

A damaged ``checkpoint.pt`` (truncated, a flipped byte, its checksum file lost) is detected
(sha256 sidecar / safe load), reported, and the previous good ``checkpoint.prev.pt`` is used on
resume -- and the resumed run ends exactly where the undamaged one did. A checkpoint whose
config hash differs from the run's is refused (CheckpointError, exit 2), not loaded; with no
usable checkpoint at all the run stops rather than silently starting over.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from .helpers import (
    TINY_TRAIN_ARGS,
    assert_error_reported,
    invoke,
    no_exception,
    read_csv,
    temp_files,
    tree_digest,
    write_suite,
)

MODEL = "mobilenetv2_100"


def train_argv(out: Path, *extra: str) -> list[str]:
    return ["train", MODEL, *TINY_TRAIN_ARGS, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run: checkpoint.pt (epoch 2), checkpoint.prev.pt (epoch 1), result.json.

    Both checkpoints are what a run holds while it is in progress; a finished one keeps only
    the last (--keep-checkpoints), so the fixture skips that final clean-up, as a kill between
    result.json and the clean-up would."""
    import torch

    from strabench.train import engine

    torch.set_num_threads(1)  # the same as every test below, so resumed numbers can be exact
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_retain_checkpoints", lambda out_dir, keep: None)
        result = invoke(train_argv(out))
    no_exception(result)
    assert result.exit_code == 0, result.stderr
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_and_lose_sidecar(path: Path) -> None:
    _truncate(path)
    path.with_name(path.name + ".sha256").unlink()


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _flip_byte, _truncate_and_lose_sidecar], ids=["truncated", "flipped_byte", "truncated_no_sidecar"])
def test_damaged_checkpoint_is_detected_and_previous_one_used_on_resume(
    trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage
) -> None:
    from strabench.train.checkpoint import load_latest_good

    run = _copy(trained, tmp_path)
    expected = json.loads((run / "result.json").read_text())
    (run / "result.json").unlink()  # killed after the last checkpoint, before result.json
    damage(run / "checkpoint.pt")

    with caplog.at_level(logging.WARNING):
        result = invoke(train_argv(run))
    no_exception(result)
    assert result.exit_code == 0, result.stderr
    reported = caplog.text + result.stderr
    assert "checkpoint.pt" in reported and "resuming from the previous checkpoint" in reported, reported

    resumed = json.loads((run / "result.json").read_text())
    assert resumed["status"] == "finished"
    assert resumed["metrics"] == expected["metrics"]  # exact: the resumed run is the same run
    assert resumed["metrics_untrained"] == expected["metrics_untrained"]
    assert _epochs(run) == [1, 2]
    state, used, warnings = load_latest_good(run, expected_config_hash=expected["config_hash"])
    assert used == run / "checkpoint.pt" and state["epoch"] == 2 and warnings == []
    assert temp_files(run) == []


def test_both_checkpoints_damaged_stops_instead_of_starting_over(trained: Path, tmp_path: Path) -> None:
    run = _copy(trained, tmp_path)
    (run / "result.json").unlink()
    _truncate(run / "checkpoint.pt")
    _flip_byte(run / "checkpoint.prev.pt")
    before = tree_digest(run)
    result = invoke(train_argv(run))
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "no usable checkpoint", str(run))
    assert tree_digest(run) == before


def test_checkpoint_of_another_config_is_refused_not_loaded(trained: Path, tmp_path: Path) -> None:
    """Same directory, different learning rate: the config hash differs, so resuming is refused and
    nothing in the run directory changes (a finished result.json of the other config included)."""
    run = _copy(trained, tmp_path)
    stored = json.loads((run / "result.json").read_text())["config_hash"]
    before = tree_digest(run)
    result = invoke(train_argv(run, "--lr", "0.002"))
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    line = assert_error_reported(result.stderr, "config hash", stored, "refusing")
    assert "checkpoint.pt" in line
    assert tree_digest(run) == before


def test_config_hash_mismatch_is_not_treated_as_corruption(trained: Path) -> None:
    """A mismatch must raise at once, not fall back to checkpoint.prev.pt (which has the same hash)."""
    from strabench.train.checkpoint import CorruptCheckpointError, load_latest_good
    from strabench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="refusing") as info:
        load_latest_good(trained, expected_config_hash="000000000000")
    assert not isinstance(info.value, CorruptCheckpointError)


@pytest.mark.slow
def test_suite_run_resumes_from_previous_checkpoint_when_latest_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same fallback through `strabench run`: the run is resumed, not redone or failed."""
    import torch

    from strabench.train import engine

    torch.set_num_threads(1)
    suite = write_suite(tmp_path, variants=(("mnv2", MODEL, ""),))
    out = tmp_path / "results"
    with monkeypatch.context() as patch:  # both checkpoints, as while a run is in progress
        patch.setattr(engine, "_retain_checkpoints", lambda out_dir, keep: None)
        first = invoke(["run", suite, "--out", out])
    no_exception(first)
    assert first.exit_code == 0, first.stdout
    reference = read_csv(out / "tiny" / "results.csv")
    run = next(p for p in (out / "tiny").iterdir() if p.is_dir())
    (run / "result.json").unlink()
    (run / "measure.json").unlink()
    _truncate(run / "checkpoint.pt")

    with caplog.at_level(logging.WARNING):
        again = invoke(["run", suite, "--out", out])
    no_exception(again)
    assert again.exit_code == 0, again.stdout
    assert "(resuming)" in again.stdout
    assert "resuming from the previous checkpoint" in caplog.text + again.stderr
    rows = read_csv(out / "tiny" / "results.csv")
    timing = {"train_time_s", "latency_ms", "images_per_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows] == [
        {k: v for k, v in r.items() if k not in timing} for r in reference
    ]
    assert _epochs(run) == [1, 2]

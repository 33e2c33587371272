"""Guarantee 12 -- nothing is left behind, and an error line is plain and whole.

A kill during synthetic-data generation leaves its half-written ``.tmp-*`` folder in the
dataset cache; the next generation removes it (only strabench's own names, only once nothing
in it changed for a minute, so a live generator in another process keeps its folder). Job
files of earlier versions in a results folder and the suite's private submitit folder are
swept the same way, once the suite no longer needs them. An
error line never carries raw ANSI escape codes when stderr is not a terminal (even with
FORCE_COLOR set, even when the bad value itself holds an escape), and a shortened message
says so instead of ending mid-word.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .helpers import child_env, invoke, strabench_argv

TINY = dict(num_train_ids=2, train_images_per_id=1, num_test_ids=2, query_cams_per_id=1, gallery_images_per_id=2,
            num_distractors=0, num_junk=0, height=32, width=16)


def _half_written(cache: Path, name: str, age_s: float) -> Path:
    folder = cache / name
    (folder / "bounding_box_train").mkdir(parents=True)
    (folder / "bounding_box_train" / "0001_c1s1_000000_00.jpg").write_bytes(b"\xff\xd8 half")
    old = time.time() - age_s
    for path in (folder / "bounding_box_train" / "0001_c1s1_000000_00.jpg", folder / "bounding_box_train", folder):
        os.utime(path, (old, old))
    return folder


def test_a_killed_generation_is_swept_by_the_next_one_and_a_live_one_is_kept(tmp_path: Path) -> None:
    from strabench.data.synthetic import ensure_dataset

    cache = tmp_path / "cache"
    dead = _half_written(cache, ".tmp-synthetic_reid-0123456789ab-k1ll3d", age_s=3600)
    stale = _half_written(cache, ".stale-synthetic_reid-0123456789ab-deadbeef", age_s=3600)
    live = _half_written(cache, ".tmp-synthetic_reid-0123456789ab-l1v3", age_s=1)
    mine = _half_written(cache, "my-notes", age_s=3600)  # not a strabench name: never touched
    root = ensure_dataset("synthetic_reid", seed=0, cache_dir=cache, **TINY)
    assert root.is_dir() and (root / "manifest.json").is_file()
    assert not dead.exists() and not stale.exists()
    assert live.exists() and mine.exists()
    leftovers = sorted(p.name for p in cache.iterdir() if p.name.startswith((".tmp-", ".stale-")))
    assert leftovers == [live.name]


def test_error_line_has_no_escape_codes_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    import subprocess

    env = {**child_env(), "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    bad = f"market1501:{tmp_path}/\x1b[31mred\x1b[0m"
    result = subprocess.run(strabench_argv("train", "mobilenetv2_100", "--data", bad, "--device", "cpu", "--out", tmp_path / "r"),
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "\x1b" not in result.stderr, repr(result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "?[31mred" in lines[-1], lines


def test_shortened_messages_end_at_a_word_and_say_so() -> None:
    from strabench.errors import clip

    text = "the checkpoint could not be unpickled because " + "a very long explanation " * 20
    short = clip(text, 80)
    assert len(short) <= 80 and short.endswith(" …")
    assert text.startswith(short[:-2]) and text[len(short) - 2] == " "  # cut at a space, not mid-word
    assert clip("short\nmessage", 80) == "short message"


def _aged(path: Path, age_s: float) -> Path:
    old = time.time() - age_s
    for item in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(item, (old, old), follow_symlinks=False)
    return path


def test_job_files_are_swept_once_the_suite_is_finished_and_only_then(tmp_path: Path, monkeypatch) -> None:
    """Job files of earlier versions in a results folder (``.jobs/*.pkl``, ``.submitit/``) and the
    suite's private submitit folder: a legacy job pickle goes once a minute old (nothing reads
    them any more); the submitit folders only once every run of the suite is finished and they
    are a minute old (a queued job still needs its pickle)."""
    from suite.fakes import FakeEngine, fake_measure, write_suite  # tests/suite

    from strabench.suite import runner
    from strabench.suite.jobfiles import suite_jobs_dir

    monkeypatch.setattr(runner, "_fit", FakeEngine())
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    monkeypatch.setenv("STRABENCH_JOBS_DIR", str(tmp_path / "jobs"))
    suite = write_suite(tmp_path)
    out = tmp_path / "results"
    suite_dir = out / "t"
    legacy = suite_dir / ".jobs"
    legacy.mkdir(parents=True)
    old_job = legacy / "base-s0-0123456789ab.pkl"
    old_job.write_bytes(b"\x80\x04.")
    _aged(old_job, 3600)
    young_job = legacy / "stra-s0-0123456789ab.pkl"
    young_job.write_bytes(b"\x80\x04.")
    submitit = suite_dir / ".submitit" / "4242"
    submitit.mkdir(parents=True)
    (submitit / "4242_submitted.pkl").write_bytes(b"\x80\x04.")
    _aged(suite_dir / ".submitit", 3600)
    private = suite_jobs_dir(suite_dir, "t")
    private.mkdir(parents=True, mode=0o700)
    (private / "4243_submitted.pkl").write_bytes(b"\x80\x04.")
    _aged(private, 3600)

    assert invoke(["run", suite, "--out", out, "--only", "base"]).exit_code == 0  # the suite is not finished yet
    assert not old_job.exists() and young_job.exists()
    assert (suite_dir / ".submitit").exists() and private.exists()

    _aged(young_job, 3600)
    assert invoke(["run", suite, "--out", out]).exit_code == 0  # now every run is finished
    assert not legacy.exists() and not (suite_dir / ".submitit").exists() and not private.exists()

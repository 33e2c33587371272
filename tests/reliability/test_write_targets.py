"""Writes go only where they should: an output path that is not a regular file is refused.

strabench writes atomically: a temp file, then a rename over the target. Given a device node, a
named pipe or a symbolic link as an output path (``report --out``, ``export --onnx``), that
rename used to put a regular file in its place -- for root, over a device node -- and a log
append (``metrics.jsonl``) followed a link planted in a run directory into whatever it points
at. Each is now refused in one line; the thing at the path, and what a link points to, stay
exactly as they were.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .helpers import TINY_INPUT, assert_error_reported, assert_one_line_error, invoke, no_exception, tiny_train_args


def _symlink(tmp_path: Path) -> Path:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "out.md"
    link.symlink_to(target)
    return link


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "out.md"
    os.mkfifo(path)
    return path


def _device(tmp_path: Path) -> Path:
    path = tmp_path / "out.md"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own: never the real one
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    return path


MAKERS = {"symbolic link": _symlink, "named pipe": _fifo, "character device": _device}


def _state(path: Path) -> tuple:
    info = os.lstat(path)
    pointed = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return stat.S_IFMT(info.st_mode), info.st_ino, pointed


def _suite_results(tmp_path: Path) -> Path:
    suite_dir = tmp_path / "results" / "s"
    run = suite_dir / "v-s0-aaaaaaaaaaaa"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"suite": "s", "variant": "v", "model": "resnet50", "seed": 0, "hash": "aaaaaaaaaaaa"}')
    (run / "result.json").write_text('{"status": "finished", "metrics": {"mAP": 1.0}}')
    return suite_dir


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_report_out_that_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path: Path, kind: str) -> None:
    target = MAKERS[kind](tmp_path)
    before = _state(target)
    result = invoke(["report", _suite_results(tmp_path), "--out", target, "--no-plots"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, str(target), kind, "not a regular file", strict=True)
    assert _state(target) == before
    if kind == "symbolic link":
        assert (tmp_path / "precious.txt").read_text() == "keep me\n"


def test_export_onnx_to_a_symbolic_link_is_refused_before_exporting(tmp_path: Path) -> None:
    link = _symlink(tmp_path)
    link.rename(tmp_path / "model.onnx")
    link = tmp_path / "model.onnx"
    before = _state(link)
    result = invoke(["export", "mobilenetv2_100", "--onnx", link, "--input", TINY_INPUT])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "model.onnx", "symbolic link", strict=True)
    assert _state(link) == before and (tmp_path / "precious.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("kind", ["symbolic link", "named pipe"])
def test_library_writers_refuse_a_target_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    from strabench.errors import WriteError
    from strabench.io import append_jsonl, atomic_write_json, atomic_write_text

    target = MAKERS[kind](tmp_path)
    before = _state(target)
    for write in (lambda: atomic_write_text(target, "x"), lambda: atomic_write_json(target, {}), lambda: append_jsonl(target, {})):
        with pytest.raises(WriteError, match="not a regular file"):
            write()
    assert _state(target) == before


def test_a_metrics_log_planted_as_a_link_in_a_run_directory_is_not_followed(tmp_path: Path) -> None:
    """A run directory is data: a link in it must not make training append to another file."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").symlink_to(precious)
    result = invoke(["train", "mobilenetv2_100", *tiny_train_args(1), "--out", run_dir])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "metrics.jsonl", "symbolic link")
    assert precious.read_text() == "keep me\n" and (run_dir / "metrics.jsonl").is_symlink()

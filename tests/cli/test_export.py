"""`strabench export`: a checked ONNX file, one-line errors, and an existing file left intact on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def export(*args: str):
    return CliRunner().invoke(app, ["export", *args])


def test_export_writes_a_valid_file_and_reports_the_difference(tmp_path: Path):
    path = tmp_path / "sub" / "fer.onnx"
    result = export("fer_resnet_stra", "--onnx", str(path), "--batch", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(onnx.load(path))
    line = " ".join(result.stdout.split())
    assert line.startswith(f"wrote {path}") and "max|diff|" in line and "0.0001 + 0.0001 * max|eager|" in line
    assert [p.name for p in path.parent.iterdir()] == ["fer.onnx"]  # no temp file left behind


def test_export_json_names_input_batch_and_tolerance(tmp_path: Path):
    path = tmp_path / "m.onnx"
    result = export("fer_resnet", "--onnx", str(path), "--input", "48x32", "--dynamic-batch", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["model"], info["input"], info["batch"], info["checked_batches"]) == ("fer_resnet", "48x32", "dynamic", [1, 2])
    assert info["max_abs_diff"] <= 1e-4 and info["bytes"] == path.stat().st_size


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["resnet5"], "unknown model"),
        (["fer_resnet", "--input", "big"], "--input"),
        (["resnet50", "--input", "65x32"], "multiples of 16"),
        (["fer_resnet", "--batch", "0"], "--batch"),
        (["fer_resnet", "--replace", "layer4.*.conv2"], "PATTERN=BLOCK"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_existing_file(tmp_path: Path, args: list[str], needle: str):
    path = tmp_path / "keep.onnx"
    path.write_bytes(b"previous export")
    result = export(args[0], "--onnx", str(path), *args[1:])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert path.read_bytes() == b"previous export"


def test_a_failed_check_leaves_the_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from strabench.measure import runtimes

    monkeypatch.setattr(runtimes, "ONNX_ATOL", -1.0)  # no difference can pass: the check fails after the export
    path = tmp_path / "keep.onnx"
    path.write_bytes(b"previous export")
    result = export("fer_resnet", "--onnx", str(path), "--threads", "1")
    assert result.exit_code == 2 and "differs from eager PyTorch" in result.stderr
    assert path.read_bytes() == b"previous export" and [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    result = export("fer_resnet", "--onnx", str(tmp_path / "m.onnx"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: strabench export needs the onnx extra: pip install 'strabench[onnx]'"

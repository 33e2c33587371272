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


def _trained_weights(tmp_path: Path) -> tuple[Path, "torch.nn.Module"]:
    import torch

    from strabench.registry import create_model

    torch.manual_seed(7)
    model = create_model("fer_resnet_stra", num_classes=5).eval()
    with torch.no_grad():  # weights no fresh model has: running statistics away from 0 / 1
        for name, t in model.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                t.uniform_(0.5, 1.5)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_export_with_a_checkpoint_carries_its_weights(tmp_path: Path):
    import numpy as np
    import onnxruntime
    import torch

    weights, trained = _trained_weights(tmp_path)
    path = tmp_path / "fer.onnx"
    result = export("fer_resnet_stra", "--onnx", str(path), "--checkpoint", str(weights), "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["checkpoint"] == str(weights)
    x = torch.randn(1, info["channels"], *(int(n) for n in info["input"].split("x")))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = trained(x)
    assert np.abs(got - want.numpy()).max() <= 1e-4 * max(1.0, float(want.abs().max()))


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"not a checkpoint", "weights.pt"), (None, "does not fit fer_resnet")],
)
def test_a_bad_checkpoint_is_one_line_and_leaves_the_existing_file(tmp_path: Path, content: bytes | None, needle: str):
    weights, _ = _trained_weights(tmp_path)  # a state_dict of fer_resnet_stra
    if content is not None:
        weights.write_bytes(content)
    path = tmp_path / "keep.onnx"
    path.write_bytes(b"previous export")
    result = export("fer_resnet", "--onnx", str(path), "--checkpoint", str(weights), "--threads", "1")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert path.read_bytes() == b"previous export"

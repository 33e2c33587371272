"""benchmarks/kernels_report.py: each setting is one interleaved fused + stock run, written with its
commit, resumed where it stopped, and the report's ratios are the JSON's (a tiny model: this checks
the plumbing, not the speed)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def kernels_report(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    module = importlib.import_module("kernels_report")
    tiny = dict(models=("fer_resnet_stra",), baseline="fer_resnet", mode="infer", batch=2, rounds=2, min_run_time=0.01)
    monkeypatch.setattr(module, "SETTINGS", {"tiny": tiny})
    return module


def test_a_setting_is_timed_fused_and_stock_and_the_report_quotes_it(kernels_report, tmp_path: Path) -> None:
    out_dir = tmp_path / "kernels"
    args = argparse.Namespace(only=None, out_dir=str(out_dir), threads=1, overwrite=False)
    assert kernels_report.run(args)["written"] == {"tiny": str(out_dir / "tiny.json")}
    data = json.loads((out_dir / "tiny.json").read_text())
    assert data["git_commit"] and data["kernels"] == "both"
    assert data["machine"]["allocator"] != "system default", "timed as `strabench bench` times (heap kept)"
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"fer_resnet", "fer_resnet_stra", "fer_resnet_stra (stock)"}
    assert rows["fer_resnet_stra"]["implementation"].startswith("StRA: ") and "torch ops" not in rows["fer_resnet_stra"]["implementation"]
    assert rows["fer_resnet_stra (stock)"]["implementation"] == "StRA: torch ops"
    # a second run keeps what is written
    assert kernels_report.run(args)["written"] == {}

    md = tmp_path / "kernels.md"
    kernels_report.report(argparse.Namespace(out_dir=str(out_dir), out=str(md), notes=None, profile=None))
    text = md.read_text()
    (line,) = [row for row in text.splitlines() if row.startswith("| fer_resnet_stra |")]
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]  # "\|" inside a cell
    assert float(cells[2]) == pytest.approx(rows["fer_resnet_stra"]["ratio_to_baseline"], abs=5e-4)
    assert float(cells[4]) == pytest.approx(rows["fer_resnet_stra (stock)"]["ratio_to_baseline"], abs=5e-4)
    assert data["git_commit"] in text


def test_the_train_step_composition_sums_each_part_and_to_the_ratio(kernels_report) -> None:
    """A made-up profile, summed by hand: convs 60 + 30 = 90 of the baseline's 100 ms; the model's
    convs 40, local attention 5, mode attention 3 + 1, batch norm 4, the rest 2 + 5 unlisted."""
    def op(name, ms):
        return {"op": name, "self_ms_per_step": ms}

    profile = {"machine": {"command": "x", "git_commit": "abc"}, "profile": {"batch": 32, "repeat": 3, "models": {
        "resnet50": {"train": {"layer4_ms_per_step": 100.0, "top_ops": [
            op("aten::convolution_backward", 60.0), op("aten::mkldnn_convolution", 30.0), op("aten::native_batch_norm", 6.0),
            op("aten::add_", 4.0)]}},
        "resnet50_stra": {"train": {"layer4_ms_per_step": 60.0, "top_ops": [
            op("aten::convolution_backward", 25.0), op("aten::mkldnn_convolution", 15.0), op("strabench::la_backward", 3.0),
            op("strabench::gpw_forward", 2.0), op("aten::bmm", 3.0), op("aten::_softmax", 1.0),
            op("aten::native_batch_norm_backward", 4.0), op("aten::add", 2.0)]}}}}}
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in kernels_report.composition(profile)[2:]}
    assert rows["convolutions (forward and backward)"] == ["40.0", "90.0", "0.400"]
    assert rows["local attention's `strabench::` operators (grouped 1×1 convs, weighting) and their autograd"] == ["5.0", "0.0", "0.050"]
    assert rows["mode attention's batched matmuls, softmax and sigmoid"] == ["4.0", "0.0", "0.040"]
    assert rows["batch norm (forward and backward)"] == ["4.0", "6.0", "0.040"]
    assert rows["everything else (element-wise, copies, autograd bookkeeping)"] == ["2.0", "4.0", "0.020"]
    assert rows["ops outside the profile's top list"] == ["5.0", "0.0", "0.050"]
    assert rows["**layer4 train step**"] == ["**60.0**", "**100.0**", "**0.600**"]


def test_stra_against_sasa_stock_fused_and_each_at_its_best(kernels_report) -> None:
    """0.9 / 0.95 with both in torch ops, 0.8 / 1.0 as shipped, 0.8 / 0.95 each on its faster one."""
    def row(model, ratio):
        return {"model": model, "ratio_to_baseline": ratio}

    data = {"rows": [row("resnet50_stra", 0.8), row("resnet50_stra (stock)", 0.9),
                     row("resnet50_sasa", 1.0), row("resnet50_sasa (stock)", 0.95)]}
    (line,) = kernels_report._design_lines(data)
    assert "**0.947×** with both in torch ops" in line and "0.800× as shipped" in line and "0.842× each on its faster" in line

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
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"fer_resnet", "fer_resnet_stra", "fer_resnet_stra (stock)"}
    assert rows["fer_resnet_stra"]["implementation"].startswith("StRA: ") and "torch ops" not in rows["fer_resnet_stra"]["implementation"]
    assert rows["fer_resnet_stra (stock)"]["implementation"] == "StRA: torch ops"
    # a second run keeps what is written
    assert kernels_report.run(args)["written"] == {}

    md = tmp_path / "kernels.md"
    kernels_report.report(argparse.Namespace(out_dir=str(out_dir), out=str(md), notes=None))
    text = md.read_text()
    (line,) = [row for row in text.splitlines() if row.startswith("| fer_resnet_stra |")]
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]  # "\|" inside a cell
    assert float(cells[2]) == pytest.approx(rows["fer_resnet_stra"]["ratio_to_baseline"], abs=5e-4)
    assert float(cells[4]) == pytest.approx(rows["fer_resnet_stra (stock)"]["ratio_to_baseline"], abs=5e-4)
    assert data["git_commit"] in text

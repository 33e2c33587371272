"""Paper columns only where our setting is the paper's; elsewhere '—' and the reason."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from strabench.cli import app
from strabench.report.tables import paper_accuracy_mismatch, paper_complexity_mismatch

from .test_report_tables import table_rows

PAPER_SETTING = {"model": "resnet50_stra", "overrides": "", "data": "market1501:/data/Market-1501", "profile": "paper",
                 "train_input": "256x128", "input": "256x128"}


def test_the_papers_setting_matches() -> None:
    assert paper_accuracy_mismatch(PAPER_SETTING) is None
    assert paper_complexity_mismatch(PAPER_SETTING) is None


def test_each_departure_is_named() -> None:
    cases = {
        "overrides": ('{"groups":4}', "overrides"),
        "data": ("synthetic_reid", "data synthetic_reid, not Market-1501"),
        "profile": ("quick", "profile quick"),
        "train_input": ("64x32", "input 64x32, not 256x128"),
    }
    for key, (value, reason) in cases.items():
        assert reason in (paper_accuracy_mismatch({**PAPER_SETTING, key: value}) or ""), key
    assert "overrides" in (paper_complexity_mismatch({**PAPER_SETTING, "overrides": '{"groups":4}'}) or "")
    assert "input 32x16" in (paper_complexity_mismatch({**PAPER_SETTING, "input": "32x16"}) or "")
    assert paper_complexity_mismatch({**PAPER_SETTING, "data": "synthetic_reid", "profile": "quick"}) is None, \
        "params and MACs do not depend on the data"
    assert paper_accuracy_mismatch({**PAPER_SETTING, "model": "resnet50_local"}) is None
    assert paper_accuracy_mismatch({**PAPER_SETTING, "model": "resnet50_eca"}) is not None, "no published number"


def _into_the_papers_setting(suite_dir: Path) -> None:
    """Rewrite the fixture's stored runs as if trained on Market-1501 with the paper's recipe at 256x128."""
    for run_dir in (p for p in suite_dir.iterdir() if (p / "config.toml").is_file()):
        text = (run_dir / "config.toml").read_text()
        text = text.replace('data = "synthetic_reid"', 'data = "market1501:/data/Market-1501"')
        text = text.replace('profile = "quick"', 'profile = "paper"').replace("input_size = [64, 32]", "input_size = [256, 128]")
        (run_dir / "config.toml").write_text(text)
        if (run_dir / "measure.json").is_file():  # failed runs were never measured
            measured = json.loads((run_dir / "measure.json").read_text())
            measured["input"] = [3, 256, 128]
            (run_dir / "measure.json").write_text(json.dumps(measured))


def test_report_puts_paper_numbers_beside_ours_only_in_the_papers_setting(two_seed_results: Path) -> None:
    header, _, stra = table_rows(CliRunner().invoke(app, ["report", str(two_seed_results)]).output)
    assert stra[header.index("mAP paper")] == "—" and stra[header.index("params paper (M)")] == "—"
    _into_the_papers_setting(two_seed_results)
    output = CliRunner().invoke(app, ["report", str(two_seed_results)]).output
    header, _, stra = table_rows(output)
    assert stra[header.index("mAP paper")] == "84.1" and stra[header.index("Δ mAP vs paper")] == "-24.10"
    assert stra[header.index("params paper (M)")] == "17.6" and stra[header.index("Δ params (M)")] == "+0.00"
    assert "— here because" not in output

"""Report plots: metric vs params / MACs, training curves, complexity bars; linked from the markdown."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from strabench.cli import app
from strabench.report.plots import plot_suite
from strabench.report.tables import load_suite_results

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_are_written_and_linked(two_seed_results: Path) -> None:
    output = CliRunner().invoke(app, ["report", str(two_seed_results)]).output
    plots = two_seed_results / "plots"
    for name in ("metric_vs_params.png", "metric_vs_macs.png", "training_curves.png"):
        assert (plots / name).read_bytes().startswith(PNG), name
        assert f"](plots/{name})" in output, f"{name} linked with a relative path"
    assert f"](plots/{name})" in (two_seed_results / "report.md").read_text()


def test_plot_suite_skips_what_it_cannot_draw(two_seed_results: Path, tmp_path: Path) -> None:
    results = load_suite_results(two_seed_results)
    for row in results.rows:
        row["params"] = None
    made = plot_suite(results, tmp_path / "p")
    assert set(made) == {"mAP vs GMACs", "training curves"}
    assert not (tmp_path / "p" / "metric_vs_params.png").exists()


def test_no_plots_option(two_seed_results: Path) -> None:
    output = CliRunner().invoke(app, ["report", str(two_seed_results), "--no-plots"]).output
    assert "![" not in output and not (two_seed_results / "plots").exists()

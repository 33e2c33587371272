"""Report tables: ours as mean ± std over seeds, the paper's beside them, failed runs as "failed"."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.report import build_report
from strabench.report.tables import load_suite_results, merge_results, summarise

from suite.fakes import FakeEngine, write_suite


def report(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def table_rows(markdown: str, which: int = 0) -> list[list[str]]:
    """The rows of the ``which``-th markdown table (0: the main table)."""
    tables: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            tables.append([])
        if is_row:
            tables[-1].append(line)
        previous = is_row
    lines = tables[which] if len(tables) > which else []
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if not set(line) <= set("|-: ")]


def test_markdown_has_ours_mean_std_interval_then_paper_columns(two_seed_results: Path) -> None:
    result = report(str(two_seed_results), "--no-plots")  # the tables; plots: test_report_plots.py
    assert result.exit_code == 0, result.output
    header, base, stra = table_rows(result.output)
    m = header.index("mAP (%)")
    assert header[m + 1 : m + 4] == ["mAP 95% CI", "mAP paper", "Δ mAP vs paper"], "interval, paper value and delta follow ours"
    # 55 and 65 over two seeds: mean 60, sd 7.07, t(0.975, 1) = 12.706 -> 60 ± 12.706 * 5 = [-3.53, 123.53],
    # which leaves the range of a percentage: clipped to [0, 100] and marked
    assert stra[m : m + 2] == ["60.00 ± 7.07", "[0.00, 100.00] clipped"]
    assert stra[m + 2 : m + 4] == ["—", "—"], "synthetic data and the quick profile are not the paper's setting"
    assert header[m + 4] == "mAP untrained" and stra[m + 4] == "10.50", "the untrained baseline (10 and 11) of the primary metric"
    assert "rank1 untrained" not in header
    assert stra[header.index("n (seeds)")] == "2/2"
    assert "GMACs (paper conv.)" in header and "params (M)" in header
    assert stra[header.index("params (M)")] == "17.60" and stra[header.index("params paper (M)")] == "—", "measured at 64x32, not 256x128"
    assert "Table 1 (Market-1501)" in result.output, "the paper table is cited"
    text = " ".join(result.output.split())
    assert "data synthetic_reid, not Market-1501" in text and "profile quick, not the paper's recipe" in text
    assert "input 64x32, not 256x128" in text


def test_failed_runs_show_failed_never_a_number(two_seed_results: Path) -> None:
    output = report(str(two_seed_results), "--no-plots").output
    header, base, _ = table_rows(output)
    for metric in ("mAP (%)", "rank1 (%)"):
        assert base[header.index(metric)] == "failed"
    assert base[header.index("Δ mAP vs paper")] == "—"
    assert base[header.index("n (seeds)")] == "0/2 (2 failed)"
    assert "NumericalError: loss is nan" in output


def test_mixed_seeds_average_only_the_finished(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, seeds="[0, 1, 2]")
    out = tmp_path / "results"
    CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--seeds", "0,1"])
    engine.fail_models.add("resnet50_stra")
    CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])  # seed 2 of stra diverges
    header, base, stra = table_rows(report(str(out / "t"), "--no-plots").output)
    assert base[header.index("mAP (%)")] == "60.00 ± 10.00"  # 50, 60, 70
    assert stra[header.index("mAP (%)")] == "60.00 ± 7.07"  # 55, 65; seed 2 failed
    assert stra[header.index("n (seeds)")] == "2/3 (1 failed)"


def test_no_paper_hides_the_paper(two_seed_results: Path) -> None:
    output = report(str(two_seed_results), "--no-paper", "--no-plots").output
    assert "paper" not in table_rows(output)[0][3:] and "Δ" not in output
    assert "GMACs (paper conv.)" in output, "the convention's name stays"


def test_report_md_written_atomically_and_printed(two_seed_results: Path) -> None:
    result = report(str(two_seed_results))
    written = (two_seed_results / "report.md").read_text()
    assert table_rows(written) == table_rows(result.output)
    assert not list(two_seed_results.glob(".*.tmp"))


def test_out_file_instead_of_report_md(two_seed_results: Path, tmp_path: Path) -> None:
    target = tmp_path / "docs" / "results.md"
    result = report(str(two_seed_results), "--out", str(target))
    assert result.exit_code == 0
    text = target.read_text()
    assert "60.00 ± 7.07" in text and not (two_seed_results / "report.md").exists()
    link = text.split("](")[1].split(")")[0]
    assert (target.parent / link).is_file(), "plot links are relative to the written file"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_machine_formats(two_seed_results: Path, fmt: str) -> None:
    result = report(str(two_seed_results), *(["--format", "csv"] if fmt == "csv" else ["--json"]))
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        records = list(csv.DictReader(io.StringIO(result.output)))
        stra = next(r for r in records if r["variant"] == "stra")
        mean, std, paper = float(stra["mAP_mean"]), float(stra["mAP_std"]), float(stra["mAP_paper_published"])
        assert stra["mAP_paper"] == "", "not the paper's setting: the published number is not put beside ours"
        base = next(r for r in records if r["variant"] == "base")
        assert base["mAP_mean"] == "" and base["failed"] == "2"
    else:
        records = json.loads(result.output)
        stra = next(r for r in records if r["variant"] == "stra")
        mean, std, paper = stra["mAP_mean"], stra["mAP_std"], stra["mAP_paper_published"]
        assert stra["mAP_paper"] is None and stra["paper_accuracy_mismatch"]
        assert next(r for r in records if r["variant"] == "base")["mAP_mean"] is None
    assert (mean, round(std, 4), paper) == (60.0, 7.0711, 84.1)
    assert not (two_seed_results / "report.md").exists()


def test_rebuilds_from_run_dirs_or_csv(two_seed_results: Path) -> None:
    expected = summarise(load_suite_results(two_seed_results))
    (two_seed_results / "plan.json").unlink()
    assert summarise(load_suite_results(two_seed_results)) == expected, "from results.csv"
    (two_seed_results / "results.csv").unlink()
    rebuilt = summarise(load_suite_results(two_seed_results))
    assert [(r["variant"], r["finished"], r["failed"], r["mAP_mean"]) for r in rebuilt] == [
        (r["variant"], r["finished"], r["failed"], r["mAP_mean"]) for r in expected], "from the run directories"


def test_copied_shards_merge(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path, seeds="[0, 1]")
    for k in (1, 2):
        assert CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / f"machine{k}"), "--shard", f"{k}/2"]).exit_code == 0
    merged = merge_results([load_suite_results(tmp_path / f"machine{k}" / "t") for k in (1, 2)])
    assert len(merged) == 1
    assert [r["finished"] for r in summarise(merged[0])] == [2, 2]
    output = report(str(tmp_path / "machine1"), str(tmp_path / "machine2"), "--no-plots").output
    assert output.count("## t") == 1 and "60.00 ± 7.07" in output


def test_results_root_finds_every_suite(tmp_path: Path, engine: FakeEngine) -> None:
    for name in ("one", "two"):
        write_suite(tmp_path, name=name, filename=f"{name}.toml")
        CliRunner().invoke(app, ["run", str(tmp_path / f"{name}.toml"), "--out", str(tmp_path / "results"), "--only", "stra"])
    text = build_report([tmp_path / "results"], plots=False).text
    assert "## one" in text and "## two" in text
    assert (tmp_path / "results" / "one" / "report.md").is_file()


def test_pending_runs_show_pending(tmp_path: Path, engine: FakeEngine) -> None:
    suite = write_suite(tmp_path)
    CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r"), "--only", "base"])
    header, base, stra = table_rows(report(str(tmp_path / "r" / "t"), "--no-plots").output)
    assert stra[header.index("mAP (%)")] == "pending" and base[header.index("mAP (%)")] == "50.00"


def test_complexity_only_suite_has_no_metric_columns(tmp_path: Path, engine: FakeEngine) -> None:
    text = write_suite(tmp_path).read_text().replace("accuracy = true", "accuracy = false")
    suite = write_suite(tmp_path, text.replace('macs = ["paper"]', 'macs = ["paper", "fvcore", "ptflops"]'))
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r")]).exit_code == 0
    assert engine.calls == [], "no training"
    output = report(str(tmp_path / "r" / "t")).output
    header = table_rows(output)[0]
    assert not any("mAP" in h for h in header)
    assert ["GMACs (paper conv.)", "GMACs paper", "Δ GMACs", "GMACs (fvcore)", "GMACs (ptflops)"] == [h for h in header if "GMACs" in h]
    assert "macs_by_convention.png" in output
    assert (tmp_path / "r" / "t" / "plots" / "macs_by_convention.png").is_file()


def test_missing_results_dir_is_one_line_error(tmp_path: Path) -> None:
    result = report(str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "results directory not found" in result.output
    (tmp_path / "empty").mkdir()
    result = report(str(tmp_path / "empty"))
    assert result.exit_code == 2 and "no suite results" in result.output


def test_bad_format_is_rejected(two_seed_results: Path) -> None:
    result = report(str(two_seed_results), "--format", "xml")
    assert result.exit_code == 2 and "--format must be one of" in result.output


def test_report_survives_a_copied_results_dir(two_seed_results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "t"
    shutil.copytree(two_seed_results, copy)
    assert "60.00 ± 7.07" in report(str(copy)).output

"""Terminal output that fits: the report's compact and wide views, `list` piped, `flops` titles.

Widths are checked at 100 columns with rich's own Console (a terminal) and, for `list`, with
the real command's output through a pipe.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from strabench.cli import app
from strabench.registry import list_models
from strabench.report.tables import load_suite_results
from strabench.report.terminal import NOISY_LEGEND, column_chunks, compact_view, drop_empty_columns, print_suite, wide_view
from strabench.suite import runner

_spec = importlib.util.spec_from_file_location("strabench_suite_fakes", Path(__file__).parents[1] / "suite" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, fakes)
_spec.loader.exec_module(fakes)

WIDTH = 100


@pytest.fixture(scope="module")
def _suite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Suite t: base (resnet50, mAP 50/60 for seeds 0/1) and stra (resnet50_stra, 55/65), fake engine."""
    root = tmp_path_factory.mktemp("views")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_fit", fakes.FakeEngine())
        patch.setattr(runner, "measure_model", fakes.fake_measure)
        suite = fakes.write_suite(root, seeds="[0, 1]")
        result = CliRunner().invoke(app, ["run", str(suite), "--out", str(root / "results")])
    assert result.exit_code == 0, result.output
    return root / "results" / "t"


@pytest.fixture
def suite_dir(_suite_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results" / "t"
    shutil.copytree(_suite_template, copy)
    return copy


def render(view, width: int = WIDTH) -> str:
    buffer = io.StringIO()
    print_suite(Console(file=buffer, width=width, force_terminal=True, color_system=None), view)
    return buffer.getvalue()


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def student_t_interval(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return low, high


def test_compact_view_has_the_headline_numbers_and_a_verdict(suite_dir: Path) -> None:
    text = render(compact_view(load_suite_results(suite_dir)))
    lines = table_lines(text)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= WIDTH
    header = lines[1]
    for column in ("variant", "mAP (%) [95% CI]", "untrained", "params (M)", "GMACs"):
        assert column in header
    base = next(line for line in lines if line.startswith("│ base"))
    low, high = student_t_interval([50.0, 60.0])  # the fake engine's mAP of seeds 0 and 1
    assert f"55.00 [{max(low, 0.0):.2f}, {min(high, 100.0):.2f}]" in base, "mAP's interval, clipped to [0, 100]"
    assert "10.50" in base, "untrained: the mean of 10 and 11"
    assert "24.60" in base and "2.460" in base  # fake params 24.6 M, MACs 100 x params
    stra = next(line for line in lines if line.startswith("│ stra"))
    assert "60.00" in stra and "17.60" in stra
    verdicts = [line for line in text.splitlines() if line.startswith("verdict:")]
    assert len(verdicts) == 1 and verdicts[0].startswith("verdict: stra vs base, mAP: ")
    assert "+5.00" in verdicts[0] and "2 seeds" in verdicts[0], verdicts[0]


def test_a_column_empty_in_every_row_is_left_out_and_named(suite_dir: Path) -> None:
    text = render(compact_view(load_suite_results(suite_dir)))  # the fake suite times nothing
    assert "latency" not in table_lines(text)[1]
    assert "left out (— in every row): latency ×base" in text
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in table_lines(text) if line.startswith("│")]
    assert len(rows) == 2
    for column in zip(*rows):
        assert not all(c == "—" for c in column), column


def test_wide_view_keeps_every_column_whole_at_100_columns(suite_dir: Path) -> None:
    from strabench.report.tables import table_frame

    results = load_suite_results(suite_dir)
    text = render(wide_view(results))
    lines = table_lines(text)
    assert "…" not in text and max(len(line) for line in lines) <= WIDTH
    frame = table_frame(results)
    for column in frame.columns:
        values = [str(v).replace("`", "") for v in frame[column]]
        if all(v == "—" for v in values):
            assert column in " ".join(text.split()).split("left out (— in every row): ")[1]
            continue
        assert any(column in line for line in lines), column
        for value in values:
            assert any(value in line for line in lines), (column, value)
    assert sum(line.startswith("┏") for line in lines) >= 2, "too wide for one table at 100 columns: split, not cut"


def test_one_seed_shows_the_runs_own_test_set_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_fit", fakes.FakeEngine())
    monkeypatch.setattr(runner, "measure_model", fakes.fake_measure)
    suite = fakes.write_suite(tmp_path, seeds="[0]")
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r")]).exit_code == 0
    text = render(compact_view(load_suite_results(tmp_path / "r" / "t")))
    assert "50.00 [48.00, 52.00]†" in text  # the fake run's interval: its score +- 2
    assert "† one seed: its own test-set interval" in text
    assert "verdict: stra vs base, mAP: undecided after 1 seed (+5.00, one seed has no interval)" in text


def test_noisy_latency_gets_its_legend(suite_dir: Path) -> None:
    from strabench.io import atomic_write_json

    timed = {"median_ms": 2.0, "iqr_ms": 1.0, "ratio_to_baseline": 1.0, "ratio_rounds": [1.0], "noisy": True, "images_per_s": 5.0}
    atomic_write_json(suite_dir / "latency.json", {
        "settings": {"rounds": 3}, "baseline": "base",
        "variants": {"base": timed, "stra": {**timed, "ratio_to_baseline": 0.9, "noisy": False}},
    })
    results = load_suite_results(suite_dir)
    for view in (compact_view(results), wide_view(results)):
        text = render(view)
        assert "1.000× NOISY" in text and "0.900×" in text
        assert text.count(NOISY_LEGEND) == 1
    assert len(NOISY_LEGEND) <= WIDTH


def test_report_command_prints_the_compact_view_on_a_terminal(suite_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.cli import _common

    buffer = io.StringIO()
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=buffer, width=WIDTH, force_terminal=True, color_system=None))
    result = CliRunner().invoke(app, ["report", str(suite_dir), "--no-plots"])
    assert result.exit_code == 0, result.output
    text = buffer.getvalue()
    assert "mAP (%) [95% CI]" in text and "verdict: stra vs base" in text
    assert "rank1" not in text, "the compact view shows the primary metric only"
    assert f"markdown with notes and plots: {suite_dir / 'report.md'}; every column: --wide" in " ".join(text.split())
    buffer.truncate(0)
    buffer.seek(0)
    wide = CliRunner().invoke(app, ["report", str(suite_dir), "--no-plots", "--wide"])
    assert wide.exit_code == 0, wide.output
    assert "rank1 (%)" in buffer.getvalue() and max(len(line) for line in table_lines(buffer.getvalue())) <= WIDTH


def test_piped_report_is_the_markdown(suite_dir: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(suite_dir), "--no-plots"])
    assert result.exit_code == 0
    assert "## t — Table 1 (Market-1501)" in result.stdout and "| variant" in result.stdout


# --- the helpers ------------------------------------------------------------------------------------


def test_column_chunks_repeat_the_key_column_and_fit() -> None:
    headers = ["key", "a", "b", "c"]
    rows = [["k" * 10, "1" * 30, "2" * 30, "3" * 30]]
    chunks = column_chunks(headers, rows, 80)
    assert chunks == [[0, 1, 2], [0, 3]]
    assert column_chunks(headers, rows, 200) == [[0, 1, 2, 3]]
    # a column wider than the terminal still gets a table of its own, never cut
    assert column_chunks(["key", "huge"], [["k", "x" * 300]], 80) == [[0, 1]]


def test_a_table_without_rows_prints_its_header() -> None:
    from strabench.report.terminal import print_table

    for terminal in (True, False):
        buffer = io.StringIO()
        print_table(Console(file=buffer, width=40, force_terminal=terminal, color_system=None), ["a", "b"], [], title="t")
        assert "┃ a ┃ b ┃" in buffer.getvalue()


def test_drop_empty_columns_keeps_the_key_and_columns_with_any_value() -> None:
    headers, rows, dropped = drop_empty_columns(["v", "a", "b", "c"], [["x", "—", "1", ""], ["y", "—", "—", "—"]])
    assert headers == ["v", "b"] and rows == [["x", "1"], ["y", "—"]] and dropped == ["a", "c"]


# --- list and flops ---------------------------------------------------------------------------------


def test_piped_list_prints_whole_names_one_per_line() -> None:
    """`strabench list | grep sasa` gives names that can be pasted into the next command."""
    done = subprocess.run([sys.executable, "-m", "strabench", "list"], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "60"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["name", "task"]
    names = [line.split("\t")[0] for line in lines[1:]]
    assert names == list_models()
    grep = [line for line in lines if "sasa_m" in line]
    assert grep and all(line.split("\t")[0] in list_models() for line in grep)
    assert all(len(line.split("\t")) == 6 for line in lines)


def test_list_on_a_terminal_never_cuts_a_name_or_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.cli import _common

    buffer = io.StringIO()
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=buffer, width=WIDTH, force_terminal=True, color_system=None))
    assert CliRunner().invoke(app, ["list"]).exit_code == 0
    text = buffer.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= WIDTH
    rows = json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)
    for row in rows:
        line = next(line for line in text.splitlines() if line.startswith(f"│ {row['name']} "))
        assert f"{row['macs_paper'] / 1e9:.3f}" in line and f"{row['params'] / 1e6:.2f}" in line


def test_flops_with_replace_is_titled_with_the_blocks_put_in() -> None:
    result = CliRunner().invoke(app, ["flops", "resnet50", "--input", "64x32", "--counter", "paper", "--replace", "layer4.*.conv2=stra"])
    assert result.exit_code == 0, result.output
    assert "resnet50[layer4.*.conv2=stra] @ 3x64x32" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert "paper" not in header and "delta" not in header, "no reference applies: the columns would be all —"
    assert "paper: no reference (" in result.stdout


def test_the_run_summary_fits_100_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make demo` prints first: the suite's summary table, on a 100-column terminal."""
    from strabench.cli import _common

    buffer = io.StringIO()
    monkeypatch.setattr(runner, "_fit", fakes.FakeEngine())
    monkeypatch.setattr(runner, "measure_model", fakes.fake_measure)
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=buffer, width=WIDTH, force_terminal=True, color_system=None))
    suite = fakes.write_suite(tmp_path, seeds="[0, 1]")
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    text = buffer.getvalue()
    summary = text[text.index("suite t ("):]
    lines = table_lines(summary)
    assert lines and max(len(line) for line in lines) <= WIDTH and "…" not in summary
    header = lines[1]
    for column in ("variant", "seed", "hash", "status", "mAP", "rank1", "params M", "GMACs", "train s"):
        assert column in header
    assert "latency ms" not in header and "left out (— in every row): latency ms" in summary
    assert sum(line.startswith("│") for line in lines) == 4

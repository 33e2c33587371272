"""``[[settings]]``: every variant in every setting, compared with the baseline within its setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.suite import runner
from strabench.suite.config import load_suite
from strabench.suite.runner import plan_runs

from .fakes import FakeEngine, fake_measure, write_suite

SWEEP = """\
name = "sweep"
data = "synthetic_reid"
profile = "quick"
seeds = [0, 1, 2]
baseline = "base"

[train]
data_sizes = { num_test_ids = 7 }

[train.quick]
epochs = 1

[measure]
params = true
macs = ["paper"]
input = "64x32"

[[settings]]
name = "d0"
train = { data_sizes = { deformation = 0.0 } }

[[settings]]
name = "d2"
train = { data_sizes = { deformation = 2.0 } }

[[variants]]
name = "base"
model = "resnet50"

[[variants]]
name = "stra"
model = "resnet50_stra"
"""


class DeformationEngine(FakeEngine):
    """The fake engine with a StRA advantage that grows with the deformation: 2 x (1 + d)."""

    def metrics(self, config: Any) -> dict[str, float]:
        d = float(config.data_sizes.get("deformation", 1.0))
        bonus = 2.0 * (1.0 + d) if "stra" in config.model else 0.0
        return {"mAP": 50.0 + 10.0 * config.seed + bonus + 0.1 * config.seed * d, "rank1": 70.0 + bonus}


def test_settings_multiply_the_runs_and_merge_data_sizes(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, SWEEP))
    assert [s.name for s in suite.settings] == ["d0", "d2"]
    plan = plan_runs(suite, tmp_path / "out", check_models=False)
    assert len(plan.runs) == 2 * 2 * 3
    ids = [r.run_id for r in plan.runs]
    assert len(set(ids)) == len(ids) and ids[0].startswith("base-d0-s0-") and ids[-1].startswith("stra-d2-s2-")
    for spec in plan.runs:
        sizes = spec.config.data_sizes
        assert sizes["num_test_ids"] == 7  # the suite's [train] size kept ...
        assert sizes["deformation"] == {"d0": 0.0, "d2": 2.0}[spec.setting]  # ... and the setting's added
    by_key = {(r.variant, r.setting, r.seed): r.hash for r in plan.runs}
    assert by_key[("base", "d0", 0)] != by_key[("base", "d2", 0)]  # a setting is part of the run's identity
    assert all(r["setting"] in ("d0", "d2") for r in plan.as_dict()["runs"])


def test_a_suite_without_settings_keeps_its_run_directories(tmp_path: Path) -> None:
    plan = plan_runs(load_suite(write_suite(tmp_path)), tmp_path / "out", check_models=False)
    spec = plan.runs[0]
    assert spec.setting == "" and spec.run_id == f"base-s0-{spec.hash}"
    assert "setting" not in spec.identity() and "setting" not in plan.as_dict()["runs"][0]
    assert "settings" not in plan.suite.as_dict()


@pytest.mark.parametrize("body, message", [
    ('[settings]\nname = "x"\n', "settings: expected one or more [[settings]] tables"),
    ('[[settings]]\ntrain = {}\n', "settings[0].name: missing"),
    ('[[settings]]\nname = "a b"\n', "settings[0].name: expected letters"),
    ('[[settings]]\nname = "a"\n[[settings]]\nname = "a"\n', "settings[1].name: duplicate setting name 'a'"),
    ('[[settings]]\nname = "a"\nsize = 3\n', "settings[0].size: unknown key"),
    ('[[settings]]\nname = "a"\ntrain = { epochz = 3 }\n', "settings[0].train.epochz: unknown key"),
    ('[[settings]]\nname = "a"\ntrain = { seed = 3 }\n', "settings[0].train.seed: not allowed"),
])
def test_bad_settings_are_refused_at_load(tmp_path: Path, body: str, message: str) -> None:
    text = write_suite(tmp_path).read_text().replace("[[variants]]", body + "\n[[variants]]", 1)
    with pytest.raises(ConfigError, match=_escape(message)):
        load_suite(write_suite(tmp_path, text, filename="bad.toml"))


def _escape(text: str) -> str:
    return re.escape(text)


def test_variants_are_compared_within_their_setting_and_plotted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the fake engine, StRA's advantage is 2 at deformation 0 and 6 at 2: the report finds
    exactly those (a comparison across settings would mix them), and draws them against the
    deformation."""
    from strabench.report.plots import comparison_points, plot_suite
    from strabench.report.tables import load_suite_results, summarise

    monkeypatch.setattr(runner, "_fit", DeformationEngine())
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    suite = write_suite(tmp_path, SWEEP)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    results = load_suite_results(tmp_path / "results" / "sweep")
    summary = summarise(results)
    diffs = {r["setting"]: r["mAP_diff"] for r in summary if r["variant"] == "stra"}
    assert diffs == pytest.approx({"d0": 2.0, "d2": 6.0})
    assert all(r["mAP_vs"] == "base" and r["mAP_pairs"] == 3 for r in summary if r["variant"] == "stra")
    points = comparison_points(summary, "mAP")
    assert sorted((p["setting"], p["diff"]) for p in points) == [("d0", pytest.approx(2.0)), ("d2", pytest.approx(6.0))]
    made = plot_suite(results, tmp_path / "plots")
    assert made["Δ mAP vs deformation"].read_bytes().startswith(b"\x89PNG")
    report = CliRunner().invoke(app, ["report", str(tmp_path / "results" / "sweep")]).output
    assert re.search(r"\|\s*setting\s*\|", report), "the settings get a column of the table"
    assert "diff_vs_deformation.png" in report
    assert "| stra (d0)" in report and "| stra (d2)" in report  # comparison and runs tables name the setting


def test_views_name_each_row_by_its_setting_in_the_suites_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The terminal and markdown views name a row `variant (setting)`, settings in the file's order
    (here d2 before d0, not the alphabet's)."""
    from strabench.report.tables import load_suite_results, table_frame
    from strabench.report.terminal import compact_view

    monkeypatch.setattr(runner, "_fit", DeformationEngine())
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    d0 = '[[settings]]\nname = "d0"\ntrain = { data_sizes = { deformation = 0.0 } }\n'
    d2 = '[[settings]]\nname = "d2"\ntrain = { data_sizes = { deformation = 2.0 } }\n'
    assert d0 + "\n" + d2 in SWEEP
    suite = write_suite(tmp_path, SWEEP.replace(d0 + "\n" + d2, d2 + "\n" + d0).replace("seeds = [0, 1, 2]", "seeds = [0]"))
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "results")]).exit_code == 0
    results = load_suite_results(tmp_path / "results" / "sweep")
    expected = ["base (d2)", "base (d0)", "stra (d2)", "stra (d0)"]
    assert [row[0] for row in compact_view(results).rows] == expected
    assert list(table_frame(results)["variant"]) == expected


def test_no_sweep_plot_without_two_deformation_levels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.report.plots import plot_suite
    from strabench.report.tables import load_suite_results

    monkeypatch.setattr(runner, "_fit", FakeEngine())
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    result = CliRunner().invoke(app, ["run", str(write_suite(tmp_path, seeds="[0, 1]")), "--out", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    made = plot_suite(load_suite_results(tmp_path / "results" / "t"), tmp_path / "p")
    assert made and not any("deformation" in label for label in made)


def test_a_variant_not_yet_run_is_pending_in_each_setting_not_one_settings_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that has not started has no config to group it by: its [[settings]] name must keep
    the pending runs of two settings apart (merged, they read as one setting's copied folders)."""
    from strabench.report.tables import load_suite_results, summarise

    monkeypatch.setattr(runner, "_fit", DeformationEngine())
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    suite = write_suite(tmp_path, SWEEP)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "results"), "--only", "base"])
    assert result.exit_code == 0, result.output
    summary = summarise(load_suite_results(tmp_path / "results" / "sweep"))
    pending = {r["setting"]: (r["finished"], r["pending"]) for r in summary if r["variant"] == "stra"}
    assert pending == {"d0": (0, 3), "d2": (0, 3)}
    assert not getattr(summary, "problems", []), "no run is counted as another's copy"
    report = CliRunner().invoke(app, ["report", str(tmp_path / "results" / "sweep")]).output
    assert "Counted once" not in report and "data ?" not in report

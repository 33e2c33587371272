"""The leaderboard: one ranked table with each row's verdict against each reference and its costs,
Pareto plots, several latency timings per suite, and the attention-zoo suites themselves.

Most tests run suites with the fake engine (microseconds a run) and hand-written latency files;
the references (ranking, paired differences and their intervals) are recomputed here with
numpy and scipy. One slow test runs a tiny real suite with timm blocks end to end.
"""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.report.leaderboard import build_leaderboard, compare_with
from strabench.report.leaderboard_plots import pareto_front
from strabench.report.tables import load_suite_results, summarise
from strabench.suite import runner
from strabench.suite.config import load_suite

from suite.fakes import FakeEngine, write_suite

ROOT = Path(__file__).resolve().parents[2]
SEEDS = list(range(8))
OFFSET = {"resnet50": 0.0, "resnet50_stra": 5.0, "resnet50_local": 2.0, "resnet50_sasa": 0.05}
JITTER = [0.3, -0.2, 0.1, 0.0, -0.1, 0.2, -0.3, 0.15]  # per-seed wobble of a variant's difference


def score(model: str, seed: int) -> float:
    shared = 40.0 + 2.0 * seed  # what the seed does to every variant (cancels in a paired difference)
    wobble = 0.0 if model == "resnet50" else JITTER[(seed + len(model)) % len(JITTER)]
    return shared + OFFSET[model] + wobble


SUITE = """\
name = "zoo"
description = "leaderboard test"
data = "synthetic_reid"
profile = "quick"
seeds = {seeds}
baseline = "base"
{leaderboard}
[train.quick]
epochs = 1

[measure]
params = true
macs = ["paper", "fvcore"]
input = "64x32"
accuracy = true

[[variants]]
name = "base"
model = "resnet50"

[[variants]]
name = "stra"
model = "resnet50_stra"

[[variants]]
name = "local"
model = "resnet50_local"

[[variants]]
name = "sasa"
model = "resnet50_sasa"
"""

PARAMS = {"resnet50": 24.6e6, "resnet50_stra": 17.6e6, "resnet50_local": 17.5e6, "resnet50_sasa": 17.8e6}
MACS = {"resnet50": 4.05e9, "resnet50_stra": 3.17e9, "resnet50_local": 3.16e9, "resnet50_sasa": 3.19e9}


class ScoredEngine(FakeEngine):
    def metrics(self, config):  # noqa: ANN001, ANN201
        value = score(config.model, config.seed)
        return {"mAP": value, "rank1": value + 10.0}


def measure(spec):  # noqa: ANN001, ANN201
    uncounted = {"paper": ["layer4.0.conv2 (StRA)", "layer4.1.conv2 (StRA)"]} if spec.model == "resnet50_stra" else {}
    return {"input": [3, 64, 32], "params": int(PARAMS[spec.model]),
            "macs": {"paper": int(MACS[spec.model]), "fvcore": int(MACS[spec.model] * 1.02)}, "uncounted": uncounted}


LATENCY = {"base": (1.0, [1.0, 1.0, 1.0]), "stra": (0.82, [0.80, 0.82, 0.85]), "local": (0.79, [0.78, 0.79, 0.81]),
           "sasa": (1.35, [1.30, 1.35, 1.40])}
LATENCY_32 = {"base": (1.0, [1.0, 1.0, 1.0]), "stra": (0.90, [0.88, 0.90, 0.93]), "local": (0.85, [0.84, 0.85, 0.86]),
              "sasa": (1.6, [1.5, 1.6, 1.7])}


def _timing(batch: int, table: dict) -> dict:
    return {"settings": {"batch": batch, "mode": "infer", "baseline": "base"}, "baseline": "base",
            "variants": {k: {"ratio_to_baseline": r, "ratio_rounds": rounds, "noisy": False} for k, (r, rounds) in table.items()}}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_fit", ScoredEngine())
        patch.setattr(runner, "measure_model", measure)
        suite = write_suite(root, SUITE.format(seeds=SEEDS, leaderboard='[leaderboard]\nrank_by = "mAP"\nversus = ["base", "stra"]\n'))
        result = CliRunner().invoke(app, ["run", str(suite), "--out", str(root / "results")])
    assert result.exit_code == 0, result.output
    directory = root / "results" / "zoo"
    (directory / "latency.json").write_text(json.dumps(_timing(1, LATENCY)))
    (directory / "latency-2.json").write_text(json.dumps(_timing(32, LATENCY_32)))
    return directory


def paired(model: str, reference: str) -> tuple[float, float, float]:
    """Mean paired difference over the seeds and its 95 % Student-t interval (the reference)."""
    diff = np.array([score(model, s) - score(reference, s) for s in SEEDS])
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=diff.std(ddof=1) / math.sqrt(len(diff)))
    return float(diff.mean()), float(low), float(high)


def test_rows_are_ranked_by_mean_score_with_their_interval(zoo):
    board = build_leaderboard(load_suite_results(zoo))
    means = {v: np.mean([score(m, s) for s in SEEDS]) for v, m in
             {"base": "resnet50", "stra": "resnet50_stra", "local": "resnet50_local", "sasa": "resnet50_sasa"}.items()}
    assert [r["variant"] for r in board.rows] == sorted(means, key=means.get, reverse=True)
    assert [r["rank"] for r in board.rows] == [1, 2, 3, 4]
    assert board.rank_by == "mAP" and board.higher_first and board.versus == ["base", "stra"]
    top = board.rows[0]
    assert top["mAP_mean"] == pytest.approx(means["stra"])
    values = [score("resnet50_stra", s) for s in SEEDS]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=np.std(values, ddof=1) / math.sqrt(len(values)))
    assert (top["mAP_ci_low"], top["mAP_ci_high"]) == pytest.approx((low, high))


@pytest.mark.parametrize("variant,model,reference,ref_model,verdict", [
    ("stra", "resnet50_stra", "base", "resnet50", "better"),
    ("local", "resnet50_local", "base", "resnet50", "better"),
    ("base", "resnet50", "stra", "resnet50_stra", "worse"),
    ("local", "resnet50_local", "stra", "resnet50_stra", "worse"),
])
def test_each_row_has_its_paired_verdict_against_each_reference(zoo, variant, model, reference, ref_model, verdict):
    board = build_leaderboard(load_suite_results(zoo))
    record = next(r for r in board.rows if r["variant"] == variant)
    compared = record["versus"][reference]
    mean, low, high = paired(model, ref_model)
    assert compared["mAP_diff"] == pytest.approx(mean)
    assert (compared["mAP_diff_ci_low"], compared["mAP_diff_ci_high"]) == pytest.approx((low, high))
    assert compared["mAP_verdict"] == verdict
    # the comparison is the report's own, made with the reference as the baseline
    direct = {r["variant"]: r for r in summarise(_as_baseline(load_suite_results(zoo), reference), paper=False)}
    assert compared["mAP_verdict"] == direct[variant]["mAP_verdict"]


def _as_baseline(results, name):  # noqa: ANN001, ANN202
    import dataclasses

    return dataclasses.replace(results, meta={**results.meta, "baseline": name})


def test_a_difference_the_seeds_cannot_resolve_is_not_called_better(zoo):
    board = build_leaderboard(load_suite_results(zoo))
    sasa = next(r for r in board.rows if r["variant"] == "sasa")["versus"]["base"]
    assert sasa["mAP_verdict"] not in ("better", "worse")  # +0.05 against seed wobble of +-0.3
    assert compare_with(load_suite_results(zoo), "base")[("sasa", sasa["group"])]["mAP_verdict"] == sasa["mAP_verdict"]


def test_cost_columns_mark_what_a_convention_left_out(zoo):
    text = CliRunner().invoke(app, ["report", str(zoo), "--no-plots"]).output
    board = text.split("## zoo: leaderboard", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in board.splitlines() if line.startswith("| #"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:4] == ["#", "variant", "block", "mAP (%) [95% CI]"]
    assert cells[4:6] == ["vs base: Δ mAP [95% CI]", "vs stra: Δ mAP [95% CI]"]
    assert cells[6:] == ["params (M)", "GMACs (paper conv.)", "GMACs (fvcore)", "latency ×base (b1)", "latency ×base (b32)"]
    stra = next(line for line in board.splitlines() if line.startswith("| 1 "))
    row = [c.strip() for c in stra.strip("|").split("|")]
    mean, low, high = paired("resnet50_stra", "resnet50")
    assert row[4] == f"better {mean:+.2f} [{low:+.2f}, {high:+.2f}]" and row[5] == "(reference)"
    assert row[6] == "17.60" and row[7] == "3.170 †" and row[8] == "3.233"
    assert row[9] == "0.820× (0.80–0.85)" and row[10] == "0.900× (0.88–0.93)"
    flat = " ".join(board.split())
    assert "† GMACs (paper conv.) leave out multiply-adds outside conv and linear layers" in flat
    assert "stra: StRA x2." in flat  # per variant, the classes left out and how many of each
    assert "docs/attention-zoo.md" in flat


@pytest.mark.parametrize("rank_by,order", [
    ("latency", ["local", "stra", "base", "sasa"]),
    ("latency_b32", ["local", "stra", "base", "sasa"]),
    ("params", ["local", "stra", "sasa", "base"]),
    ("macs_paper", ["local", "stra", "sasa", "base"]),
    ("rank1", ["stra", "local", "sasa", "base"]),
])
def test_any_metric_or_cost_ranks_the_board(zoo, rank_by, order):
    board = build_leaderboard(load_suite_results(zoo), rank_by=rank_by)
    assert [r["variant"] for r in board.rows] == order
    # ranked by a cost, the board still shows the suite's score and its verdicts
    assert board.metric == (rank_by if rank_by == "rank1" else "mAP")
    from strabench.report.leaderboard import leaderboard_frame

    assert f"vs base: Δ {board.metric} [95% CI]" in list(leaderboard_frame(board).columns)


def test_bad_choices_are_one_line(zoo):
    with pytest.raises(ConfigError, match=r"--rank-by 'bogus': the suite zoo has no such metric or cost; choose from mAP, rank1"):
        build_leaderboard(load_suite_results(zoo), rank_by="bogus")
    result = CliRunner().invoke(app, ["report", str(zoo), "--versus", "nosuch"])
    assert result.exit_code == 2 and "--versus 'nosuch': the suite zoo has no variant of that name" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["report", str(zoo), "--rank-by", "mAP", "--json"])
    assert result.exit_code == 2 and "shape the markdown report's leaderboard" in result.output


def test_report_writes_the_board_first_and_its_pareto_plots(zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    result = CliRunner().invoke(app, ["report", str(copy), "--rank-by", "mAP", "--versus", "stra"])
    assert result.exit_code == 0, result.output
    text = (copy / "report.md").read_text()
    assert text.index("## zoo: leaderboard, ranked by mAP (higher first)") < text.index("## zoo\n")
    assert "vs stra: Δ mAP" in text and "vs base: Δ mAP" not in text  # --versus replaces the suite's references
    for name in ("pareto_macs.png", "pareto_latency.png"):
        png = copy / "plots" / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{name}" in text


def test_a_suite_without_a_leaderboard_table_reports_as_before(zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    plan = json.loads((copy / "plan.json").read_text())
    plan["suite"].pop("leaderboard")
    (copy / "plan.json").write_text(json.dumps(plan))
    result = CliRunner().invoke(app, ["report", str(copy), "--no-plots"])
    assert result.exit_code == 0 and "zoo: leaderboard" not in result.output and "vs stra" not in result.output


@pytest.mark.parametrize("points,front", [
    ([(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0)], [3, 0, 1]),
    ([(1.0, 50.0), (1.0, 50.0)], [0, 1]),  # equal points dominate neither
    ([(2.0, 50.0), (1.0, 50.0)], [1]),  # same score for less
    ([], []),
])
def test_pareto_front_keeps_what_nothing_beats(points, front):
    assert pareto_front(points) == front
    for i in range(len(points)):  # brute force: on the front iff nothing is at least as good on both and better on one
        beaten = any(c <= points[i][0] and s >= points[i][1] and (c, s) != points[i] for c, s in points)
        assert (i in front) == (not beaten)


# --- the suite format: several timings, the [leaderboard] table ------------------------------------


def _load(tmp_path: Path, extra: str, measure: str = "") -> object:
    text = SUITE.format(seeds="[0]", leaderboard=extra)
    if measure:
        text = text.replace('accuracy = true\n', f'accuracy = true\n{measure}\n')
    return load_suite(write_suite(tmp_path, text))


def test_latency_may_be_an_array_of_timings(tmp_path):
    suite = _load(tmp_path, "", 'latency = [{ batch = 1, min_run_time = 0.1 }, { batch = 32, rounds = 2 }]')
    assert [t.batch for t in suite.measure.latencies] == [1, 32]
    assert suite.measure.latency.batch == 1 and suite.measure.more_latency[0].rounds == 2
    assert suite.measure.as_dict()["more_latency"][0]["batch"] == 32
    single = _load(tmp_path, "", "latency = { batch = 1 }")
    assert "more_latency" not in single.measure.as_dict()  # a suite with one timing keeps its runs' hashes
    for bad, message in [("latency = []", "got an empty array"), ("latency = [{ batch = 0 }]", r"measure.latency\[0\].batch"),
                         ("latency = [{ batch = 1 }, { batch = 1 }]", "the same timing is listed twice"),
                         ("latency = [{ bogus = 1 }]", r"measure.latency\[0\].bogus")]:
        with pytest.raises(ConfigError, match=message):
            _load(tmp_path, "", bad)


def test_each_timing_is_written_to_its_own_file(tmp_path, monkeypatch):
    from strabench.measure import latency
    from strabench.suite.runner import SuiteListener, plan_runs, time_suite

    timed = []

    def fake(names, *, batch, **kwargs):  # noqa: ANN001, ANN202
        timed.append(batch)
        return [{"model": str(n), "median_ms": 1.0, "ratio_to_baseline": 1.0, "ratio_rounds": [1.0], "noisy": False} for n in names]

    monkeypatch.setattr(latency, "benchmark_models", fake)
    suite = _load(tmp_path, "", 'latency = [{ batch = 1 }, { batch = 4 }]')
    plan = plan_runs(suite, tmp_path / "out")
    plan.out_dir.mkdir(parents=True)
    time_suite(plan, SuiteListener())
    assert timed == [1, 4]
    first, second = (json.loads((plan.out_dir / name).read_text()) for name in ("latency.json", "latency-2.json"))
    assert first["settings"]["batch"] == 1 and second["settings"]["batch"] == 4
    time_suite(plan, SuiteListener())
    assert timed == [1, 4]  # both up to date: nothing timed again


@pytest.mark.parametrize("table,message", [
    ('[leaderboard]\nbogus = 1\n', "leaderboard.bogus"),
    ('[leaderboard]\nversus = ["nosuch"]\n', r"leaderboard.versus\[0\]: no variant is named 'nosuch'"),
    ('[leaderboard]\nversus = []\n', "expected a non-empty array of variant names"),
    ('[leaderboard]\nrank_by = 3\n', "leaderboard.rank_by"),
])
def test_leaderboard_table_mistakes_are_one_line(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, table)


def test_the_leaderboard_table_is_no_part_of_a_runs_identity(tmp_path):
    from strabench.suite.runner import plan_runs

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = plan_runs(_load(tmp_path / "a", ""), tmp_path / "o1")
    ranked = plan_runs(_load(tmp_path / "b", '[leaderboard]\nrank_by = "rank1"\n'), tmp_path / "o2")
    assert [r.hash for r in plain.runs] == [r.hash for r in ranked.runs]
    assert ranked.suite.as_dict()["leaderboard"] == {"rank_by": "rank1", "versus": ["base"]}


# --- the attention-zoo suites ---------------------------------------------------------------------


def test_the_two_zoo_suites_hold_the_same_variants_and_every_block():
    from strabench.models.timm_blocks import TIMM_ATTENTION

    full, cost = (tomllib.loads((ROOT / "suites" / f"{n}.toml").read_text()) for n in ("attention_zoo", "attention_zoo_cost"))
    assert full["variants"] == cost["variants"] and full["measure"]["latency"] == cost["measure"]["latency"]
    assert [t["batch"] for t in full["measure"]["latency"]] == [1, 32]
    assert cost["measure"]["accuracy"] is False and full["measure"]["accuracy"] is True
    blocks = [v["replace"]["layer4.*.conv2"] for v in full["variants"] if "replace" in v]
    names = {b.split(":")[1].split("(")[0] for b in blocks}
    assert len(names) >= 10 and names <= set(TIMM_ATTENTION)
    assert {v["model"] for v in full["variants"] if "replace" not in v} >= {
        "resnet50", "resnet50_se", "resnet50_nl", "resnet50_sasa", "resnet50_local", "resnet50_stra"}
    assert full["leaderboard"]["versus"] == ["resnet50", "stra"]
    for name in ("attention_zoo", "attention_zoo_cost"):
        load_suite(ROOT / "suites" / f"{name}.toml")  # every block resolves, every setting is timm's


@pytest.mark.slow
def test_the_cost_suite_plans_every_block_at_its_sizes(tmp_path):
    """--dry-run builds each variant on the meta device at 256x128 and runs the plan-time checks."""
    result = CliRunner().invoke(app, ["run", str(ROOT / "suites" / "attention_zoo_cost.toml"), "--dry-run", "--json",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert len(runs) == 23 and {r["status"] for r in runs} == {"pending"}


TINY = """\
name = "tinyzoo"
data = "synthetic_reid"
profile = "quick"
seeds = [0]

[leaderboard]
rank_by = "mAP"
versus = ["base"]

[train.quick]
epochs = 1
batch_size = 8
input_size = [32, 16]
data_sizes = {{ num_train_ids = 4, train_images_per_id = 4, num_test_ids = 3, query_cams_per_id = 1, gallery_images_per_id = 2, num_distractors = 2, num_junk = 0, height = 32, width = 16 }}

[measure]
params = true
macs = ["paper", "fvcore", "ptflops"]
input = "64x32"
latency = [{{ batch = 1, min_run_time = 0.01, threads = 1 }}, {{ batch = 2, min_run_time = 0.01, threads = 1 }}]
accuracy = true

[[variants]]
name = "base"
model = "resnet50"

[[variants]]
name = "bot"
model = "resnet50"
replace = {{ "layer4.*.conv2" = "timm-attn:bottleneck" }}
"""


@pytest.mark.slow
def test_a_tiny_real_zoo_suite_runs_and_ranks(tmp_path):
    """The real engine trains timm blocks at 32x16 (layer4 at 2x1: bottleneck attention built for it),
    counts and times them at 64x32 (built again for 4x2), and the report ranks them."""
    pytest.importorskip("timm")
    suite = tmp_path / "tinyzoo.toml"
    suite.write_text(TINY.format())
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    directory = out / "tinyzoo"
    assert (directory / "latency.json").is_file() and (directory / "latency-2.json").is_file()
    board = build_leaderboard(load_suite_results(directory))
    assert {r["variant"] for r in board.rows} == {"base", "bot"} and all(r["rank"] for r in board.rows)
    bot = next(r for r in board.rows if r["variant"] == "bot")
    assert bot["macs_fvcore"] > bot["macs_paper"] > 0 and bot["uncounted"].get("fvcore") is None
    assert any("BottleneckAttn" in item for item in bot["uncounted"]["paper"])
    assert bot["latency"] is not None and bot["latency_b2"] is not None
    report = CliRunner().invoke(app, ["report", str(directory)])
    assert report.exit_code == 0, report.output
    assert "tinyzoo: leaderboard" in (directory / "report.md").read_text()


def test_counts_whose_left_out_list_cannot_be_read_are_said_so(zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    for measured in copy.glob("stra-s*/measure.json"):
        data = json.loads(measured.read_text())
        data.pop("uncounted")
        measured.write_text(json.dumps(data))
    board = build_leaderboard(load_suite_results(copy))
    assert any("could not be read" in note and "stra" in note for note in board.notes)


def test_a_suite_with_nothing_finished_yet_shows_its_board_pending(tmp_path):
    from strabench.suite.runner import plan_runs

    suite = write_suite(tmp_path, SUITE.format(seeds="[0]", leaderboard='[leaderboard]\nrank_by = "mAP"\n'))

    plan = plan_runs(load_suite(suite), tmp_path / "results")
    plan.out_dir.mkdir(parents=True)
    (plan.out_dir / "plan.json").write_text(json.dumps(plan.as_dict()))
    board = build_leaderboard(load_suite_results(plan.out_dir))
    assert [r["rank"] for r in board.rows] == [None] * 4
    assert board.notes[0] == "No run has finished with mAP yet: ranked by params until one has."


def test_a_block_with_fused_operators_gets_its_torch_ops_ratio_beside(zoo, tmp_path):
    """Where a variant's stock twin is other code (StRA on torch ops), its ratio is its own column;
    variants without a fused form read 'same code' there, never a number they were not timed at."""
    directory = tmp_path / "zoo"
    shutil.copytree(zoo, directory)
    timing = _timing(1, LATENCY)
    for name, entry in timing["variants"].items():
        entry["implementation"] = "StRA: local_attention_infer" if name == "stra" else "SASA: torch ops"
        entry["stock_implementation"] = "StRA: torch ops" if name == "stra" else entry["implementation"]
        entry["stock_ratio_to_baseline"] = 0.91 if name == "stra" else entry["ratio_to_baseline"]
        entry["stock_ratio_rounds"] = [0.90, 0.91, 0.94] if name == "stra" else entry["ratio_rounds"]
    (directory / "latency.json").write_text(json.dumps(timing))
    text = CliRunner().invoke(app, ["report", str(directory), "--no-plots"]).output
    board = text.split("## zoo: leaderboard", 1)[1].split("\n## ", 1)[0]
    header = [c.strip() for c in next(line for line in board.splitlines() if line.startswith("| #")).strip("|").split("|")]
    assert header[-3:] == ["latency ×base (b1)", "latency ×base (b1, torch ops)", "latency ×base (b32)"]
    rows = {c[1]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in board.splitlines() if line.startswith("| ") and not line.startswith("| #"))}
    assert rows["stra"][-3:-1] == ["0.820× (0.80–0.85)", "0.910× (0.90–0.94)"]  # neither timing flagged
    assert rows["sasa"][-2] == "same code"
    assert "'torch ops': the same variant with every block in plain torch ops" in " ".join(board.split())

    timing["variants"]["stra"]["stock_noisy"] = True  # the stock twin's own flag is shown on its cell
    (directory / "latency.json").write_text(json.dumps(timing))
    text = CliRunner().invoke(app, ["report", str(directory), "--no-plots"]).output
    assert "0.910× (0.90–0.94) NOISY" in text and "0.820× (0.80–0.85) NOISY" not in text

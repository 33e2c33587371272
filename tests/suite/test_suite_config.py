"""Suite files: every mistake is one line naming the file and the key, exit 2, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.suite.config import load_suite
from strabench.suite.runner import plan_runs

from .fakes import BASE_SUITE, write_suite

REPO = Path(__file__).resolve().parents[2]
GOOD = BASE_SUITE.format(name="t", seeds="[0]", epochs=1)


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


BAD_SUITES = [
    pytest.param(GOOD.replace('name = "t"', 'name = "t'), "invalid TOML", id="malformed-toml"),
    pytest.param("nmae = 'x'\n" + GOOD, "nmae: unknown key", id="unknown-top-key"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_strq"'), "variants[1].model", id="unknown-model"),
    pytest.param(edit('model = "resnet50"', 'model = "face_resnet50"'), "variants[0].model", id="model-of-other-task"),
    pytest.param(edit('model = "resnet50"', "model = 50"), "variants[0].model: expected a string", id="model-wrong-type"),
    pytest.param(edit("seeds = [0]", 'seeds = "0"'), "seeds: expected a non-empty array", id="seeds-string"),
    pytest.param(edit("seeds = [0]", "seeds = [0, 0]"), "seeds: expected distinct", id="seeds-duplicate"),
    pytest.param(edit("seeds = [0]", "seeds = [-1]"), "seeds[0]: expected an integer >= 0", id="seeds-negative"),
    pytest.param(edit("seeds = [0]", "seeds = []"), "seeds: expected a non-empty array", id="seeds-empty"),
    pytest.param(GOOD.split("[[variants]]")[0], "variants: expected at least one", id="no-variants"),
    pytest.param(edit('name = "stra"', 'name = "base"'), "variants[1].name: duplicate variant name", id="duplicate-variant"),
    pytest.param(edit('name = "stra"', 'name = "a/b"'), "variants[1].name", id="variant-name-path"),
    pytest.param(edit('data = "synthetic_reid"', 'data = "synthetic_ried"'), "data: unknown dataset", id="unknown-data"),
    pytest.param(edit('data = "synthetic_reid"', 'data = "synthetic_faces"\ntask = "reid"'), "task: data", id="task-data-mismatch"),
    pytest.param(edit("epochs = 1", 'epochs = "ten"'), "train.quick.epochs: expected an integer", id="train-wrong-type"),
    pytest.param(edit("epochs = 1", "epoch = 1"), "train.quick.epoch: unknown key (did you mean 'epochs'?)", id="train-unknown-key"),
    pytest.param(edit("[train.quick]", "[train]\nseed = 3\n[train.quick]"), "train.seed: not allowed", id="train-suite-owned"),
    pytest.param(edit("epochs = 1", "input_size = [64]"), "train.quick.input_size: expected an array of 2", id="train-bad-size"),
    pytest.param(edit('macs = ["paper"]', 'macs = ["flops"]'), "measure.macs[0]: expected one of", id="macs-unknown-convention"),
    pytest.param(edit("accuracy = true", "accuracy = true\nlatency = { batch = 0 }"), "measure.latency.batch: expected an integer >= 1", id="latency-batch"),
    pytest.param(edit("accuracy = true", 'accuracy = "yes"'), "measure.accuracy: expected true or false", id="accuracy-type"),
    pytest.param(edit('input = "64x32"', 'input = "64by32"'), "measure.input: expected HEIGHTxWIDTH", id="measure-input"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { grops = 4 }'), "variants[1].overrides", id="unknown-override"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_stra"\ntrain = { lr = -1.0 }'), "variants[1] (stra): lr must be", id="train-value-resolve"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_stra"\ncolour = "red"'), "variants[1].colour: unknown key", id="variant-unknown-key"),
    # issue #7: keys quoted (one line), absurd nesting, values a run's config.toml/hash cannot hold, bad data folder
    pytest.param('"a\\nb" = 1\n' + GOOD, "'a\\nb': unknown key", id="key-with-newline"),
    pytest.param(GOOD + "\n[measure.x]\ny = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply", id="deeply-nested-toml"),
    pytest.param(edit("epochs = 1", "epochs = 1\ndata_sizes = { num_train_ids = 1979-05-27 }"), "train.quick.data_sizes.num_train_ids must be a number, string, boolean or an array of them, got a date (1979-05-27)", id="data-size-date"),
    pytest.param(edit("epochs = 1", "epochs = 1\ndata_sizes = { num_train_ids = inf }"), "train.quick.data_sizes.num_train_ids must be a finite number, got inf", id="data-size-inf"),
    pytest.param(edit("epochs = 1", "epochs = 1\ndata_sizes = { num_train_ids = -3 }"), "dataset size num_train_ids=-3 must be >= 1", id="data-size-negative"),
    pytest.param(edit("epochs = 1", "epochs = 1\ndata_sizes = { num_trian_ids = 3 }"), "unknown size 'num_trian_ids'", id="data-size-unknown"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { groups = nan }'), "variants[1].overrides.groups must be a finite number, got nan", id="override-nan"),
    # how comparisons are decided (docs/statistics.md)
    pytest.param(edit("seeds = [0]", "seeds = [0]\nequivalence_margin = { mAP = 2.0, rank2 = 1.0 }"), "equivalence_margin.rank2: unknown metric for task 'reid' (did you mean 'rank5'?); expected one of mAP, rank1, rank5, rank10", id="margin-unknown-metric"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nequivalence_margin = -1.0"), "equivalence_margin: expected a number > 0", id="margin-negative"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nmin_effect = inf"), "min_effect: expected a finite number", id="min-effect-inf"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nmin_effect = { mAP = \"2\" }"), "min_effect.mAP: expected a number", id="min-effect-string"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nalpha = 0.5"), "alpha: expected a number between 0 and 0.5", id="alpha-too-large"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nalpha = 0"), "alpha: expected a number > 0", id="alpha-zero"),
    pytest.param(edit("seeds = [0]", "seeds = [0, 1]\nmax_seeds = 1"), "max_seeds: expected at least as many as the suite's 2 seeds", id="max-seeds-below-seeds"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\npilot = 3"), "pilot: expected a string", id="pilot-type"),
    pytest.param(edit("seeds = [0]", "seeds = [0]\nequivalence_margn = 2.0"), "equivalence_margn: unknown key (did you mean 'equivalence_margin'?)", id="margin-typo"),
    pytest.param(edit('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { groups = 07:32:00 }'), "variants[1].overrides.groups must be a number, string, boolean or an array of them, got a time (07:32:00)", id="override-time"),
    # issue #12: replace = { pattern = block }, refused at load (blocks) or plan time (patterns, shapes)
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\nreplace = { "layer4.*.conv2" = "strra" }'), "variants[0].replace.'layer4.*.conv2': unknown block 'strra'; did you mean stra?", id="replace-unknown-block"),
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\nreplace = { "layer4.*.conv2" = 3 }'), "variants[0].replace.'layer4.*.conv2': expected a string", id="replace-block-type"),
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\nreplace = "stra"'), "variants[0].replace: expected a table", id="replace-not-a-table"),
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\nreplace = { "layer9.*" = "stra" }'), "variants[0].replace: 'layer9.*' matches no module of the model", id="replace-matches-nothing"),
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\nreplace = { "layer4.0.conv1" = "stra" }'), "variants[0].replace: layer4.0.conv1: stra keeps the channel count (C -> C), and the module it would replace maps 1024 -> 512 channels", id="replace-shape-misfit"),
    pytest.param(edit('model = "resnet50"', 'model = "resnet50"\noverrides = { replace = "stra" }'), "variants[0].overrides.replace: use the variant's `replace` table", id="replace-in-overrides"),
]


@pytest.mark.parametrize("text, expected", BAD_SUITES)
def test_bad_suite_is_one_line_error_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write_suite(tmp_path, text)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert str(path) in message
    assert expected in message
    assert len([line for line in result.output.strip().splitlines() if line.strip()]) <= 3  # one line, maybe wrapped
    assert not out.exists(), "nothing may be created for a bad suite"


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write_suite(tmp_path, GOOD.replace("[measure]", "[measure"))
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line \d+, column \d+"):
        load_suite(path)


def test_missing_suite_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "suite file not found" in result.output


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--shard", "3/2"], "--shard 3/2"),
        (["--shard", "0/2"], "--shard 0/2"),
        (["--shard", "a/b"], "--shard must look like K/N"),
        (["--only", "nope"], "--only 'nope'"),
        (["--seeds", "x"], "--seeds takes integers"),
        (["--profile", "slow"], "--profile must be one of"),
        (["--data", "synthetic_faces"], "--data 'synthetic_faces' is for task 'face'"),
        (["--device", "tpu"], "--device must be"),
    ],
)
def test_bad_options_exit_2_and_create_nothing(tmp_path: Path, args: list[str], expected: str) -> None:
    path = write_suite(tmp_path)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not out.exists()


def test_profile_tables_apply_only_to_their_profile(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, epochs=1))
    quick = plan_runs(suite, tmp_path, check_models=False)
    paper = plan_runs(suite, tmp_path, profile="paper", check_models=False)
    assert {r.config.epochs for r in quick.runs} == {1}
    assert {r.config.epochs for r in paper.runs} == {100}  # the paper recipe (App. B.1), not [train.quick]


def test_variant_train_and_overrides_reach_the_config(tmp_path: Path) -> None:
    text = edit('model = "resnet50_stra"', 'model = "resnet50_stra"\noverrides = { groups = 4 }\ntrain = { lr = 1e-4 }')
    plan = plan_runs(load_suite(write_suite(tmp_path, text)), tmp_path)
    stra = [r for r in plan.runs if r.variant == "stra"][0]
    assert stra.config.lr == 1e-4 and stra.config.model_overrides == {"groups": 4}
    base = [r for r in plan.runs if r.variant == "base"][0]
    assert base.config.lr != 1e-4 and base.config.model_overrides == {}


def test_variant_replace_is_part_of_the_run_and_its_measure(tmp_path: Path) -> None:
    from strabench.measure.params import count_params
    from strabench.registry import create_model
    from strabench.suite.runner import measure_model

    text = edit('name = "stra"\nmodel = "resnet50_stra"', 'name = "stra"\nmodel = "resnet50"\nreplace = { "layer4.*.conv2" = "stra" }')
    plan = plan_runs(load_suite(write_suite(tmp_path, text)), tmp_path)
    base, stra = plan.runs
    assert stra.config.model_overrides == {"replace": {"layer4.*.conv2": "stra"}}
    assert base.config.model_overrides == {} and base.hash != stra.hash  # same model, other blocks: another run
    assert plan.as_dict()["suite"]["variants"][1]["replace"] == {"layer4.*.conv2": "stra"}
    assert "replace" not in plan.as_dict()["suite"]["variants"][0]
    import pickle

    from strabench.suite.executors import portable_plan

    shipped = pickle.loads(pickle.dumps(portable_plan(plan)))  # what a --jobs worker receives
    assert shipped.suite.variants[1].replace == {"layer4.*.conv2": "stra"}
    measured = measure_model(stra)
    assert measured["params"] == count_params(create_model("resnet50_stra"))  # StRA's params, not ResNet-50's
    assert measured["params"] != count_params(create_model("resnet50"))


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_suite_plan_reaches_a_jobs_worker(path: Path, tmp_path: Path) -> None:
    """What `run --jobs N` pipes to each worker: the plan, pickled, with every table of the suite
    ([[settings]], [leaderboard], margins) intact."""
    import pickle

    from strabench.suite.executors import portable_plan

    plan = plan_runs(load_suite(path), tmp_path, check_models=False)
    shipped = pickle.loads(pickle.dumps(portable_plan(plan)))
    assert [s.name for s in shipped.suite.settings] == [s.name for s in plan.suite.settings]
    assert [dict(s.train) for s in shipped.suite.settings] == [dict(s.train) for s in plan.suite.settings]
    assert [r.run_id for r in shipped.runs] == [r.run_id for r in plan.runs]


def test_decision_keys_are_read_and_change_no_run(tmp_path: Path) -> None:
    plain = load_suite(write_suite(tmp_path, GOOD, filename="plain.toml"))
    text = edit("seeds = [0]", "seeds = [0]\nequivalence_margin = 2.0\nmin_effect = { mAP = 3.0, rank1 = 4.0 }\n"
                "alpha = 0.01\npilot = \"results/quick\"\nmax_seeds = 9")
    suite = load_suite(write_suite(tmp_path, text, filename="decided.toml"))
    assert dict(suite.equivalence_margin) == {"mAP": 2.0}, "a bare number is about the task's primary metric"
    assert dict(suite.min_effect) == {"mAP": 3.0, "rank1": 4.0}
    assert (suite.alpha, suite.pilot, suite.max_seeds) == (0.01, "results/quick", 9)
    assert suite.as_dict()["equivalence_margin"] == {"mAP": 2.0}
    hashes = [r.hash for r in plan_runs(suite, tmp_path / "a", check_models=False).runs]
    assert hashes == [r.hash for r in plan_runs(plain, tmp_path / "b", check_models=False).runs]
    with pytest.raises(TypeError):
        suite.min_effect["mAP"] = 1.0  # type: ignore[index]


def test_runs_without_replace_keep_their_committed_identity() -> None:
    """The committed results/quick runs are found under the ids the plan gives (hash unchanged),
    for every variant the folder has run (a folder may hold fewer variants than the suite)."""
    from strabench.train.config import config_hash

    suite_dir = REPO / "results" / "quick"
    committed = sorted(p.name for p in suite_dir.glob("*-s0-*") if p.is_dir())
    assert len(committed) >= 2, committed
    plan = plan_runs(load_suite(REPO / "suites" / "quick.toml"), REPO / "results", seeds=[0], check_models=False)
    ran = {name.split("-s0-")[0] for name in committed}
    assert sorted(r.run_id for r in plan.runs if r.variant in ran) == committed
    for run in (r for r in plan.runs if r.variant in ran):  # the training config's own hash, as in its config.toml
        head = (suite_dir / run.run_id / "config.toml").read_text(encoding="utf-8").splitlines()[1]
        assert head == f"# config_hash = {config_hash(run.config)}"


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_suites_load_and_plan(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    assert "Reproduces:" in text.split("\n\n")[0] and 'profile = "paper"' in text.split("\n\n")[0], "header must cite the table and explain profile = paper"
    suite = load_suite(path)
    plan = plan_runs(suite, tmp_path, check_models=False)
    assert plan.runs and len({r.run_id for r in plan.runs}) == len(plan.runs)
    assert suite.data.startswith("synthetic") and suite.profile == "quick"


def test_suite_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "suites").mkdir()
    write_suite(tmp_path / "suites", filename="mine.toml")
    monkeypatch.chdir(tmp_path)
    assert load_suite("mine").path == Path("suites/mine.toml")


def test_data_folder_that_is_not_the_dataset_is_refused_when_planning(tmp_path: Path) -> None:
    """Every run would fail on it: refused before anything is written (strabench.data.check_data)."""
    market = tmp_path / "market"
    market.mkdir()
    path = write_suite(tmp_path, edit('data = "synthetic_reid"', f'data = "market1501:{market}"'))
    out = tmp_path / "results"
    for args in ([], ["--dry-run"]):
        result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), *args])
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert f"{path}: data: {market / 'bounding_box_train'}: Market-1501 folder is missing" in message
        assert not out.exists()

"""`strabench show RUN_DIR [--diff OTHER]`: a run's resolved config, and what differs between two."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.suite import runner

_spec = importlib.util.spec_from_file_location("strabench_suite_fakes", Path(__file__).parents[1] / "suite" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, fakes)
_spec.loader.exec_module(fakes)


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """variant -> run dir: base and stra as planned, plus stra again with two overrides."""
    root = tmp_path_factory.mktemp("show")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_fit", fakes.FakeEngine())
        patch.setattr(runner, "measure_model", fakes.fake_measure)
        suite = fakes.write_suite(root)
        out = root / "results"
        assert CliRunner().invoke(app, ["run", str(suite), "--out", str(out)]).exit_code == 0
        done = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--only", "stra",
                                        "variants.stra.train.lr=1e-4", "train.quick.epochs=3"])
        assert done.exit_code == 0, done.output
    runs = {}
    for path in (out / "t").glob("*/run.json"):
        identity = json.loads(path.read_text())
        key = identity["variant"] + ("+overrides" if identity.get("overrides") else "")
        runs[key] = path.parent
    return runs


def show(*args: str):
    return CliRunner().invoke(app, ["show", *map(str, args)])


def test_show_prints_every_resolved_setting(suite_runs: dict[str, Path]) -> None:
    run_dir = suite_runs["stra"]
    result = show(run_dir)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    config = tomllib.loads((run_dir / "config.toml").read_text())  # the reference: the file itself
    for key, value in config.items():
        if isinstance(value, dict) and value:
            for inner, item in value.items():
                assert json.loads(lines[f"train.{key}.{inner}"]) == item
        else:
            assert json.loads(lines[f"train.{key}"]) == value, key
    assert json.loads(lines["run.variant"]) == "stra" and json.loads(lines["measure.macs"]) == ["paper"]
    assert "run.overrides" not in lines


def test_show_names_the_overrides_that_made_a_run(suite_runs: dict[str, Path]) -> None:
    data = json.loads(show(suite_runs["stra+overrides"], "--json").stdout)
    assert data["run.overrides"] == ["variants.stra.train.lr=1e-4", "train.quick.epochs=3"]
    assert data["train.lr"] == 1e-4 and data["train.epochs"] == 3


def test_diff_prints_only_what_differs(suite_runs: dict[str, Path]) -> None:
    result = show(suite_runs["stra"], "--diff", suite_runs["stra+overrides"], "--json")
    assert result.exit_code == 0, result.output
    rows = {r["key"]: (r["a"], r["b"]) for r in json.loads(result.stdout)}
    assert rows.pop("train.lr") == (0.001, 1e-4)
    assert rows.pop("train.epochs") == (2, 3)
    assert rows.pop("run.overrides") == ("(absent)", ["variants.stra.train.lr=1e-4", "train.quick.epochs=3"])
    assert set(rows) == {"run.hash", "run.run_id", "train.config_hash"}, "nothing else differs"


def test_diff_table_and_no_differences(suite_runs: dict[str, Path]) -> None:
    result = show(suite_runs["base"], "--diff", suite_runs["stra"])
    assert result.exit_code == 0
    assert "train.model" in result.stdout and '"resnet50_stra"' in result.stdout
    assert "train.lr" not in result.stdout
    same = show(suite_runs["base"], "--diff", suite_runs["base"])
    assert same.exit_code == 0 and "no differences" in same.stdout


def test_env_adds_the_environment(suite_runs: dict[str, Path]) -> None:
    data = json.loads(show(suite_runs["base"], "--env", "--json").stdout)
    assert "env.python" in data and "env.git_commit" in data


def test_a_train_run_without_run_json(tmp_path: Path) -> None:
    from strabench.train.config import TrainConfig, resolve, to_toml

    (tmp_path / "config.toml").write_text(to_toml(resolve(TrainConfig(model="resnet50", epochs=1))))
    data = json.loads(show(tmp_path, "--json").stdout)
    assert data["train.model"] == "resnet50" and data["train.epochs"] == 1
    assert not any(key.startswith("run.") for key in data)


@pytest.mark.parametrize("make", ["missing", "empty", "bad_toml"])
def test_not_a_run_directory_is_one_line(tmp_path: Path, make: str) -> None:
    target = tmp_path / "run"
    if make != "missing":
        target.mkdir()
    if make == "bad_toml":
        (target / "config.toml").write_text("epochs = [\n")
    result = show(target)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1

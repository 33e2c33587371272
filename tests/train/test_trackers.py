"""MLflow logging of suites and runs, read back from a real local SQLite store with MLflow's own client.

The reference for what must be there is the run directory's own files, parsed here."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from strabench.cli import app  # noqa: E402
from strabench.cli._tracking import rewrite_mlflow_uri  # noqa: E402
from strabench.suite import runner  # noqa: E402

_spec = importlib.util.spec_from_file_location("strabench_suite_fakes", Path(__file__).parents[1] / "suite" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, fakes)
_spec.loader.exec_module(fakes)


@pytest.fixture(scope="module")
def logged_suite(tmp_path_factory: pytest.TempPathFactory):
    """Suite t (base fails, stra finishes; 2 seeds) run with --mlflow into its default store."""
    root = tmp_path_factory.mktemp("mlflow")
    engine = fakes.FakeEngine()
    engine.fail_models.add("resnet50")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_fit", engine)
        patch.setattr(runner, "measure_model", fakes.fake_measure)
        suite = fakes.write_suite(root, seeds="[0, 1]")
        result = CliRunner().invoke(app, ["run", str(suite), "--out", str(root / "results"), "--mlflow", "train.quick.lr=0.002"])
    assert result.exit_code == 1, result.output  # base's runs failed
    return root / "results", result, engine


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, its tables created once (MLflow's schema migrations take
    seconds): copied to where a test's store goes, it is a store a user made earlier. The
    store the suite creates itself is logged_suite's."""
    path = tmp_path_factory.mktemp("store") / "mlruns.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _place(store: Path, where: Path) -> None:
    import shutil

    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store, where)


def client_for(out: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlruns.db').resolve()}")


def runs_of(client: MlflowClient, experiment: str = "t") -> dict[str, object]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return {r.data.tags["strabench.run_id"]: r for r in client.search_runs([found.experiment_id])}


def test_each_run_is_an_mlflow_run_of_the_suites_experiment(logged_suite) -> None:
    out, result, _ = logged_suite
    runs = runs_of(client_for(out))
    on_disk = {json.loads(p.read_text())["run_id"] for p in (out / "t").glob("*/run.json")}
    assert set(runs) == on_disk and len(on_disk) == 4
    statuses = {run_id: r.info.status for run_id, r in runs.items()}
    assert sorted(statuses.values()) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    for run_id, run in runs.items():
        assert run.info.run_name == run_id
        if run.info.status == "FAILED":
            assert "loss is nan" in run.data.tags["strabench.error"]
    assert "tracking: " in result.output and "mlruns.db" in result.output


def test_params_metrics_and_curves_are_the_run_directorys(logged_suite) -> None:
    out, _, _ = logged_suite
    client = client_for(out)
    runs = runs_of(client)
    stra = next(r for run_id, r in runs.items() if run_id.startswith("stra-s1"))
    run_dir = out / "t" / stra.data.tags["strabench.run_id"]
    config = tomllib.loads((run_dir / "config.toml").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    params = stra.data.params
    assert params["train.lr"] == str(config["lr"]) == "0.002"
    assert params["train.epochs"] == str(config["epochs"]) and params["train.data_sizes.num_train_ids"] == str(config["data_sizes"]["num_train_ids"])
    assert params["run.variant"] == "stra" and params["measure.macs"] == '["paper"]'
    assert params["run.overrides"] == '["train.quick.lr=0.002"]'
    metrics = stra.data.metrics
    assert metrics["mAP"] == result["metrics"]["mAP"] and metrics["untrained/mAP"] == result["metrics_untrained"]["mAP"]
    assert metrics["params"] == 17_600_000
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loss = client.get_metric_history(stra.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(loss, key=lambda m: m.step)] == [(r["epoch"], r["loss"]) for r in records]
    curve = sorted(client.get_metric_history(stra.info.run_id, "eval/mAP"), key=lambda m: m.step)
    assert [m.step for m in curve][0] == 0 and curve[0].value == result["metrics_untrained"]["mAP"]
    assert curve[-1].value == result["metrics"]["mAP"]


def test_artifacts_are_the_runs_small_files(logged_suite) -> None:
    out, _, _ = logged_suite
    client = client_for(out)
    stra = next(r for run_id, r in runs_of(client).items() if run_id.startswith("stra-s0"))
    names = {a.path for a in client.list_artifacts(stra.info.run_id)}
    assert {"config.toml", "run.json", "result.json", "metrics.jsonl"} <= names
    assert not any(name.endswith(".pt") for name in names)
    local = Path(client.download_artifacts(stra.info.run_id, "result.json", str(out.parent / "dl")))
    assert json.loads(local.read_text()) == json.loads((out / "t" / stra.data.tags["strabench.run_id"] / "result.json").read_text())
    assert (out / "mlartifacts").is_dir(), "artifacts next to the store, not in the working folder"


def test_syncing_again_logs_nothing_twice_and_replaces_a_retried_run(logged_suite, monkeypatch) -> None:
    out, _, engine = logged_suite
    client = client_for(out)
    before = {k: r.info.run_id for k, r in runs_of(client).items()}
    engine.fail_models.clear()  # the failed runs are retried and now finish
    monkeypatch.setattr(runner, "_fit", engine)
    monkeypatch.setattr(runner, "measure_model", fakes.fake_measure)
    suite = out.parent / "suite.toml"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--mlflow", "train.quick.lr=0.002"])
    assert result.exit_code == 0, result.output
    after = runs_of(client)
    assert set(after) == set(before)
    for run_id, run in after.items():
        if run_id.startswith("stra"):
            assert run.info.run_id == before[run_id], "unchanged: not logged again"
        else:
            assert run.info.run_id != before[run_id] and run.info.status == "FINISHED", "the retried run replaces the failed one"


def test_mlflow_uri_names_another_store(tmp_path: Path, monkeypatch, empty_store: Path) -> None:
    monkeypatch.setattr(runner, "_fit", fakes.FakeEngine())
    monkeypatch.setattr(runner, "measure_model", fakes.fake_measure)
    suite = fakes.write_suite(tmp_path)
    store = tmp_path / "elsewhere" / "store.db"
    _place(empty_store, store)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r"), "--mlflow", f"sqlite:///{store}", "--only", "stra"])
    assert result.exit_code == 0, result.output
    assert len(runs_of(MlflowClient(tracking_uri=f"sqlite:///{store}"))) == 1
    assert not (tmp_path / "r" / "mlruns.db").exists()


def test_train_logs_its_run(tmp_path: Path, monkeypatch, empty_store: Path) -> None:
    from strabench.train import engine

    _place(empty_store, tmp_path / "runs" / "mlruns.db")

    fake = fakes.FakeEngine()
    monkeypatch.setattr(engine, "fit", lambda cfg, out, **kw: Path(out).mkdir(parents=True) or fake(cfg, out, resume=True, progress=_Quiet()))
    result = CliRunner().invoke(app, ["train", "resnet50", "--epochs", "2", "--out", str(tmp_path / "runs" / "one"), "--mlflow"])
    assert result.exit_code == 0, result.output
    runs = runs_of(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"), "train")
    (run,) = runs.values()
    assert run.data.params["train.model"] == "resnet50" and run.data.metrics["mAP"] == 50.0


class _Quiet:
    def __getattr__(self, name):
        return lambda *args: None


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["run", "demo", "--mlflow"], ["run", "demo", "--mlflow"]),
        (["run", "demo", "--mlflow", "--out", "x"], ["run", "demo", "--mlflow", "--out", "x"]),
        (["run", "--mlflow", "demo"], ["run", "--mlflow", "demo"]),
        (["run", "demo", "--mlflow", "sqlite:///m.db"], ["run", "demo", "--mlflow-uri", "sqlite:///m.db"]),
        (["run", "demo", "--mlflow=http://host:5000"], ["run", "demo", "--mlflow-uri", "http://host:5000"]),
        (["run", "demo", "--mlflow", "data=market1501:/d"], ["run", "demo", "--mlflow", "data=market1501:/d"]),
        (["run", "demo", "--", "--mlflow", "sqlite:///m.db"], ["run", "demo", "--", "--mlflow", "sqlite:///m.db"]),
    ],
)
def test_mlflow_takes_an_optional_uri(argv: list[str], expected: list[str]) -> None:
    assert rewrite_mlflow_uri(argv) == expected


def test_wandb_without_the_package_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    suite = fakes.write_suite(tmp_path)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r"), "--wandb"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --wandb needs the wandb package: pip install wandb (then wandb login)"
    assert not (tmp_path / "r").exists(), "refused before anything ran"


REAL_SUITE = """\
name = "tiny"
data = "synthetic_expressions"
profile = "quick"
seeds = [0]

[train.quick]
epochs = 2
batch_size = 14
input_size = [16, 16]
data_sizes = { num_train = 28, num_public_test = 14, num_private_test = 14 }

[measure]
params = true
macs = ["paper"]
input = "16x16"
accuracy = true

[[variants]]
name = "stra"
model = "fer_resnet_stra"
overrides = { layers = [1, 1, 1, 1] }
"""


@pytest.mark.slow
def test_a_real_suite_run_leaves_tensorboard_curves_and_an_mlflow_experiment(tmp_path: Path) -> None:
    """The real engine through `strabench run --mlflow`: each run's TensorBoard events (read with
    TensorBoard's reader) and its MLflow run (read with MLflow's client) hold the epochs of its
    metrics.jsonl, evaluated every epoch by the quick profile."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    suite = tmp_path / "tiny.toml"
    suite.write_text(REAL_SUITE)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--mlflow"])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p.parent for p in (out / "tiny").glob("*/run.json")]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(r["eval_subset"]) for r in records] == [["test_acc", "val_acc"]] * 2, "evaluated every epoch"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    subset = [(r["epoch"], r["eval_subset"]["test_acc"]) for r in records]
    assert [(e.step, e.value) for e in events.Scalars("eval_subset/test_acc")] == [(s, pytest.approx(v)) for s, v in subset]
    assert [e.step for e in events.Scalars("eval/test_acc")] == [0, records[-1]["epoch"]], "the full test set: untrained, final"
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = runs_of(client, "tiny").values()
    history = sorted(client.get_metric_history(run.info.run_id, "eval_subset/test_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == subset
    assert (run_dir / "metrics.csv").is_file()

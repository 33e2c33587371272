"""Finished runs into MLflow (and Weights & Biases): params, per-epoch curves, final metrics, files.

A run directory is the record (``config.toml``, ``metrics.jsonl``, ``result.json``, and for
suite runs ``run.json`` and ``measure.json``); these functions read it -- plain data, nothing
in it is imported or unpickled -- and log it:

* params: the resolved training config (``train.*``), what was measured (``measure.*``) and the
  run's identity (``run.*``, its command-line overrides included);
* metrics: each epoch's numbers with step = epoch (``train/loss``, ``train/lr``,
  ``eval/mAP`` ...; the untrained evaluation at step 0), then the final scores (``mAP`` ...),
  the untrained ones (``untrained/mAP``), params, MACs and training time;
* artifacts: the run's small files (config, results, curves; never checkpoints);
* status FINISHED or FAILED (with the reason as a tag).

MLflow: one experiment per suite, one MLflow run per strabench run, tagged ``strabench.run_id``;
logging is idempotent (a run already logged with the same finish time is left alone, one logged
from an earlier attempt is replaced), so a suite can be synced again at any time. The default
store is SQLite under the results folder (``default_mlflow_uri``): ``mlflow ui
--backend-store-uri sqlite:///results/mlruns.db`` shows it.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.train.tracking import METRICS_CSV, flatten, scalars

__all__ = ["MlflowTracker", "RunRecord", "WandbTracker", "default_mlflow_uri", "read_run"]

ARTIFACTS = ("config.toml", "run.json", "result.json", "measure.json", "env.json", "metrics.jsonl", METRICS_CSV)
TAG_RUN_ID = "strabench.run_id"
TAG_FINISHED = "strabench.finished_utc"
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM = 6000  # MLflow's limit on a param value's length


@dataclass
class RunRecord:
    """What a run directory says about its run, ready for any tracker."""

    run_dir: Path
    name: str
    status: str  # finished | failed | partial
    params: dict[str, str] = field(default_factory=dict)
    curves: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (epoch, tag -> value)
    final: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    started_ms: int | None = None
    finished_ms: int | None = None


def default_mlflow_uri(out: Path | str) -> str:
    """``sqlite:///<out>/mlruns.db`` (absolute), MLflow's local store under the results folder."""
    return f"sqlite:///{(Path(out).resolve() / 'mlruns.db').as_posix()}"


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", name)


def _read_json(path: Path) -> dict[str, Any]:
    from strabench.io import read_json_object

    return read_json_object(path) or {}


def _ms(stamp: Any) -> int | None:
    if not isinstance(stamp, str):
        return None
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return None


def read_run(run_dir: Path | str) -> RunRecord:
    """The record of one run directory (finished, failed or still partial)."""
    from strabench.io import read_jsonl

    run_dir = Path(run_dir)
    result = _read_json(run_dir / "result.json")
    identity = _read_json(run_dir / "run.json")
    measured = _read_json(run_dir / "measure.json")
    env = _read_json(run_dir / "env.json")
    try:
        config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        config = {}
    status = result.get("status") if result.get("status") in ("finished", "failed") else "partial"
    if measured.get("error"):
        status = "failed"
    name = str(identity.get("run_id") or result.get("run_id") or run_dir.name)
    record = RunRecord(run_dir, name, status)

    params: dict[str, Any] = {}
    for key in ("suite", "variant", "model", "seed", "hash", "overrides"):
        if key in identity:
            params[f"run.{key}"] = identity[key]
    params.update({f"train.{k}": v for k, v in flatten(config, "").items()})
    params.update({f"measure.{k}": v for k, v in flatten(identity.get("measure") or {}, "").items()})
    record.params = {_key(k).replace("/", "."): _param(v) for k, v in params.items()}

    untrained = result.get("metrics_untrained") or {}
    if untrained:
        record.curves.append((0, scalars({"eval": untrained})))
    jsonl = run_dir / "metrics.jsonl"
    for line in read_jsonl(jsonl).records if jsonl.is_file() else []:
        if isinstance(line, dict) and isinstance(line.get("epoch"), int):
            record.curves.append((line["epoch"], {_key(k): v for k, v in scalars(line).items()}))

    final: dict[str, Any] = {**(result.get("metrics") or {})}
    final.update({f"untrained/{k}": v for k, v in untrained.items()})
    for key in ("train_time_s", "eval_time_s", "final_loss"):
        final[key] = result.get(key)
    final["params"] = measured.get("params", result.get("params"))
    for convention, macs in (measured.get("macs") or {}).items():
        final[f"macs_{convention}"] = macs
    record.final = {_key(k): float(v) for k, v in final.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

    record.tags = {TAG_RUN_ID: name, "strabench.status": status}
    for key, tag in (("finished_utc", TAG_FINISHED), ("config_hash", "strabench.config_hash"), ("reason", "strabench.error")):
        if result.get(key) is not None:
            record.tags[tag] = str(result[key])[:5000]
    if measured.get("error"):
        record.tags["strabench.error"] = str(measured["error"])[:5000]
    for key in ("git_commit", "git_dirty", "strabench", "torch", "device", "hostname"):
        if env.get(key) is not None:
            record.tags[f"env.{key}"] = str(env[key])
    record.artifacts = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    record.started_ms = _ms(env.get("started_utc"))
    record.finished_ms = _ms(result.get("finished_utc"))
    return record


def _param(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MlflowTracker:
    """Logs run directories to one MLflow experiment (created on first use)."""

    def __init__(self, uri: str, experiment: str, *, artifact_root: Path | None = None) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError("--mlflow needs the mlflow package: pip install 'strabench[mlflow]' (or pip install mlflow)") from None
        import logging

        from mlflow.tracking import MlflowClient

        for noisy in ("alembic", "mlflow.store.db.utils"):  # schema migrations of a new SQLite store
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = artifact_root.resolve().as_uri() if artifact_root is not None else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                self.experiment_id = found.experiment_id
        except Exception as exc:  # noqa: BLE001 - any store failure (bad URI, locked DB, server down) is one line
            raise ConfigError(f"MLflow store {uri}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None

    def log_run(self, run_dir: Path | str) -> str:
        """Log one run directory; returns "logged", "unchanged" (already there) or "skipped" (not ended)."""
        from mlflow.entities import Metric, Param, RunTag

        record = read_run(run_dir)
        if record.status == "partial":
            return "skipped"
        existing = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{_quoted(record.name)}'")
        for run in existing:
            if run.data.tags.get(TAG_FINISHED) == record.tags.get(TAG_FINISHED) and run.data.tags.get("strabench.status") == record.status:
                return "unchanged"
        for run in existing:  # an earlier attempt of the same run (failed, then retried)
            self.client.delete_run(run.info.run_id)
        run = self.client.create_run(self.experiment_id, start_time=record.started_ms, run_name=record.name, tags=record.tags)
        run_id = run.info.run_id
        try:
            now = record.finished_ms or int(datetime.now().timestamp() * 1000)
            params = [Param(k, v) for k, v in record.params.items()]
            for chunk in _chunks(params, 100):
                self.client.log_batch(run_id, params=chunk)
            metrics = [Metric(tag, value, now, epoch) for epoch, values in record.curves for tag, value in values.items()]
            last = max((epoch for epoch, _ in record.curves), default=0)
            metrics += [Metric(name, value, now, last) for name, value in record.final.items()]
            for chunk in _chunks(metrics, 1000):
                self.client.log_batch(run_id, metrics=chunk)
            for path in record.artifacts:
                self.client.log_artifact(run_id, str(path))
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED" if record.status == "finished" else "FAILED", end_time=record.finished_ms)
        return "logged"


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


class WandbTracker:
    """Logs run directories to a Weights & Biases project (``wandb`` must be installed and set up)."""

    def __init__(self, project: str) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError("--wandb needs the wandb package: pip install wandb (then wandb login)") from None
        self.wandb = wandb
        self.project = project

    def log_run(self, run_dir: Path | str) -> str:
        record = read_run(run_dir)
        if record.status == "partial":
            return "skipped"
        run = self.wandb.init(project=self.project, name=record.name, config=record.params, tags=[record.status],
                              dir=str(record.run_dir), reinit=True)
        try:
            for epoch, values in record.curves:
                run.log(values, step=epoch)
            run.summary.update(record.final)
            for path in record.artifacts:
                run.save(str(path), base_path=str(record.run_dir), policy="now")
        finally:
            run.finish(exit_code=0 if record.status == "finished" else 1)
        return "logged"

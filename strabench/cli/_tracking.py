"""``--mlflow [URI]`` and ``--wandb`` of ``run`` and ``train``: which trackers, and when they log.

``run``: each run is logged as it ends (the view's ``on_run_end``), and when the command ends
every finished or failed run of the plan not logged yet is (MLflow only: it can tell what it
already has), so runs finished earlier, or by other processes and cluster jobs, are caught up
by running the command again. ``train``: the run, once it has ended.

``--mlflow URI`` is spelled on the command line like an option with an optional value: the
argument parser sees ``--mlflow-uri URI`` (``rewrite_mlflow_uri``, applied to the whole line).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: A tracking URI starts with a scheme: sqlite:///..., file:///..., http(s)://..., databricks.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def rewrite_mlflow_uri(args: list[str]) -> list[str]:
    """``--mlflow=URI`` and ``--mlflow URI`` (URI with a scheme) -> ``--mlflow-uri URI``; a bare
    ``--mlflow`` stays the flag (the default store). Tokens after ``--`` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    out: list[str] = []
    index = 0
    while index < end:
        token = args[index]
        if token.startswith("--mlflow="):
            out += ["--mlflow-uri", token.removeprefix("--mlflow=")]
        elif token == "--mlflow" and index + 1 < end and _URI.match(args[index + 1]) and "=" not in args[index + 1].split(":")[0]:
            out += ["--mlflow-uri", args[index + 1]]
            index += 1
        else:
            out.append(token)
        index += 1
    return out + args[end:]


def open_trackers(*, experiment: str, out: Path, mlflow: bool, mlflow_uri: str | None, wandb: bool) -> list[Any]:
    """The trackers asked for (each checks that its package is there: one line if not)."""
    trackers: list[Any] = []
    if mlflow or mlflow_uri:
        from strabench.train.trackers import MlflowTracker, default_mlflow_uri

        uri = mlflow_uri or default_mlflow_uri(out)
        artifacts = _local_artifact_root(uri)
        trackers.append(MlflowTracker(uri, experiment, artifact_root=artifacts))
    if wandb:
        from strabench.train.trackers import WandbTracker

        trackers.append(WandbTracker(experiment))
    return trackers


def _local_artifact_root(uri: str) -> Path | None:
    """Next to a local SQLite store, its artifacts (MLflow would put them under ./mlruns of
    whatever folder the command ran in); a server or file store chooses its own."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None


def log_runs(trackers: list[Any], run_dirs: list[Path], say: Any, *, sweep: bool = False) -> None:
    """Log each directory to each tracker; ``sweep``: MLflow only (it skips what it has)."""
    for tracker in trackers:
        if sweep and not hasattr(tracker, "uri"):
            continue
        where = getattr(tracker, "uri", None) or f"W&B project {tracker.project}"
        logged = 0
        for run_dir in run_dirs:
            try:
                logged += run_dir.is_dir() and tracker.log_run(run_dir) == "logged"
            except Exception as exc:  # noqa: BLE001 - a tracking failure must not stop a suite; the run's files are the record
                say(f"tracking: {run_dir.name} not logged to {where}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]} "
                    "(its files are complete; rerun the command to log it)")
        if logged:
            say(f"tracking: {logged} run(s) logged to {where}")


class TrackedView:
    """A suite view that also logs each run to the trackers as it ends (every other call forwarded)."""

    def __init__(self, view: Any, trackers: list[Any], plan: Any) -> None:
        self._view = view
        self._trackers = trackers
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)

    def on_run_end(self, spec: Any, status: str, row: dict) -> None:
        self._view.on_run_end(spec, status, row)
        if status in ("finished", "failed"):
            log_runs(self._trackers, [self._plan.run_dir(spec)], self._say)

    def close(self) -> None:
        try:
            log_runs(self._trackers, [self._plan.run_dir(s) for s in self._plan.selected], self._say, sweep=True)
        finally:
            self._view.close()

    def _say(self, text: str) -> None:
        out = getattr(self._view, "out", None)
        if out is not None:
            out.print(text, highlight=False, markup=False, soft_wrap=True)

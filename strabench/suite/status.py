"""Where each run of a suite stands, read from the results directory alone (any host).

Executors leave a small ``state.json`` in each run directory: who submitted it (executor, job
id), who runs it (host, pid) and the last state they wrote. That file alone would lie after a
kill, so ``run_states`` weighs it against the truth on disk:

* ``result.json`` / ``measure.json`` decide finished and failed (with the one-line reason);
* a run whose state says running is running only while its run lock (``<suite>/.locks/<run>``)
  has a live holder (``strabench.lease``: same machine by pid and start time, other hosts by
  heartbeat); otherwise it was interrupted and resumes from its checkpoint;
* queued means submitted to a scheduler and not started yet (the job id says which job).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from strabench.io import atomic_write_json, ensure_directory, read_json_object

from strabench.locks import inspect_lock
from strabench.suite.runner import MEASURE_JSON, RESULT_JSON, RUN_JSON, run_status
from strabench.suite.plan import PLAN_JSON
from strabench.suite.store import measure_of

STATE_JSON = "state.json"
LOCKS_DIR = ".locks"
#: What ``strabench status`` shows, in the order it counts them.
STATES = ("pending", "queued", "running", "interrupted", "finished", "failed")


def run_lock_dir(suite_dir: Path, run_id: str) -> Path:
    """The directory whose ``.lock`` an executor holds while it runs ``run_id`` (the engine
    locks the run directory itself, during training only)."""
    return suite_dir / LOCKS_DIR / f"run-{run_id}"


def write_state(run_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Record ``state`` (queued, running, finished, failed, interrupted) for the run, keeping
    the fields of earlier states (job id, attempts) unless given anew."""
    record = {**(read_json_object(run_dir / STATE_JSON) or {}), **fields, "state": state,
              "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if state == "running":
        record.update(host=socket.gethostname(), pid=os.getpid())
    ensure_directory(run_dir)
    atomic_write_json(run_dir / STATE_JSON, record)
    return record


def _runs_in(suite_dir: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(run id, run dir, identity) of every run directory, then planned runs not started yet."""
    found: dict[str, tuple[str, Path, dict[str, Any]]] = {}
    if suite_dir.is_dir():
        for run_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            identity = read_json_object(run_dir / RUN_JSON) or read_json_object(run_dir / STATE_JSON)
            if identity is not None:
                found[run_dir.name] = (run_dir.name, run_dir, identity)
    plan = read_json_object(suite_dir / PLAN_JSON) or {}
    entries = plan.get("runs")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("run_id"), str) and entry["run_id"] not in found:
            found[entry["run_id"]] = (entry["run_id"], suite_dir / entry["run_id"], entry)
    return list(found.values())


def run_state(suite_dir: Path, run_id: str, run_dir: Path, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's state (see the module doc): run_id, state, job_id, host, reason, updated, attempts."""
    measure = measure_of(identity or {})
    recorded = read_json_object(run_dir / STATE_JSON) or {}
    on_disk = run_status(run_dir, measure)
    row: dict[str, Any] = {
        "run_id": run_id, "job_id": recorded.get("job_id"), "executor": recorded.get("executor"),
        "host": recorded.get("host"), "attempts": recorded.get("attempts"), "updated": recorded.get("updated"),
        "reason": None,
    }
    owner, verdict = inspect_lock(run_lock_dir(suite_dir, run_id))
    if on_disk in ("finished", "failed"):
        row["state"] = on_disk
        if on_disk == "failed":
            result = read_json_object(run_dir / RESULT_JSON) or {}
            measured = read_json_object(run_dir / MEASURE_JSON) or {}
            row["reason"] = result.get("reason") or measured.get("error")
    elif verdict is not None and verdict.alive:
        row["state"] = "running"
        row["host"] = (owner or {}).get("hostname", row["host"])
        row["reason"] = verdict.reason
    elif recorded.get("state") == "queued":
        row["state"] = "queued"
    elif recorded.get("state") in ("running", "interrupted") or on_disk == "partial":
        row["state"] = "interrupted"
        row["reason"] = recorded.get("reason") or "stopped before finishing; resumes from its checkpoint"
    else:
        row["state"] = "pending"
    return row


def suite_states(suite_dir: Path | str) -> list[dict[str, Any]]:
    """The state of every run found in ``suite_dir`` (its run directories and its plan.json)."""
    suite_dir = Path(suite_dir)
    return [run_state(suite_dir, run_id, run_dir, identity) for run_id, run_dir, identity in _runs_in(suite_dir)]

"""The results store of a suite directory: every run ever finished in it, whatever plan ran it.

A suite directory holds one sub-directory per run (``<variant>-s<seed>-<hash>``) with its
``run.json`` (identity), ``config.toml`` (resolved training config), ``result.json`` and
``measure.json``. ``results.csv`` is *derived*: rebuilt from every run directory on disk, so a
new plan (other seeds, profile, data, device, overrides, input), a failed run or a refused
command can never hide a finished row. The plan being executed only adds rows for its runs that
have no directory yet (pending).

Each row carries the run's full identity: variant, model, overrides, data, profile, training
input, device, seed, data seed, the training config's hash, and ``group`` — the hash of the
training config without the seed. Rows with the same ``group`` are seeds of one setting, which
is what the report aggregates and compares.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.io import read_json_object
from strabench.errors import StrabenchError
from strabench.suite.config import MAC_CONVENTIONS, MeasureSpec

if TYPE_CHECKING:
    from strabench.suite.plan import RunPlan

RESULTS_CSV = "results.csv"
RUN_JSON = "run.json"
MEASURE_JSON = "measure.json"
RESULT_JSON = "result.json"
CONFIG_TOML = "config.toml"
CHECKPOINT_FILES = ("checkpoint.pt", "checkpoint.prev.pt")

IDENTITY_COLUMNS = (
    "suite", "variant", "setting", "model", "overrides", "data", "profile", "train_input", "device", "seed", "data_seed",
    "group", "config_hash", "hash", "run_id", "status",
)
MEASURE_COLUMNS = ("params", "macs_paper", "macs_fvcore", "macs_ptflops", "input", "latency_ms", "images_per_s")
BASE_COLUMNS = (*IDENTITY_COLUMNS, *MEASURE_COLUMNS)
TAIL_COLUMNS = ("train_time_s", "epochs", "config", "error", "code")
# Per-metric column suffixes: the untrained network's score, the test-set interval, the test-set size.
UNTRAINED = "_untrained"
CI_LOW, CI_HIGH, N_TEST = "_ci_low", "_ci_high", "_n_test"
METRIC_SUFFIXES = (UNTRAINED, CI_LOW, CI_HIGH, N_TEST)
# Known metrics first, in the paper's order; other keys (face verification sets) follow sorted, then "mean".
METRIC_ORDER = ("mAP", "rank1", "rank5", "rank10", "val_acc", "test_acc")
# Training-config keys that do not change what a run computes: not part of its group.
_NOT_IDENTITY = frozenset({"seed", "num_workers"})


# --- status -------------------------------------------------------------------------------------


def needs_measure(measure: MeasureSpec | None) -> bool:
    """Whether a run has per-run measurements (params, MACs) to wait for; latency is per suite."""
    return measure is not None and bool(measure.params or measure.macs)


def run_status(run_dir: Path, measure: MeasureSpec | None = None) -> str:
    """finished | failed | partial (started, not done: resumable) | pending (nothing yet).

    Finished = result.json says finished and, if the run measures params or MACs, measure.json
    holds them. A measure.json holding an ``error`` makes the run failed.
    """
    result = read_json_object(run_dir / RESULT_JSON)
    measured = read_json_object(run_dir / MEASURE_JSON)
    if result is not None and result.get("status") == "failed":
        return "failed"
    if measured is not None and measured.get("error"):
        return "failed"
    if result is not None and result.get("status") == "finished":
        return "partial" if needs_measure(measure) and measured is None else "finished"
    if not run_dir.is_dir():
        return "pending"
    started = [*CHECKPOINT_FILES, "metrics.jsonl", MEASURE_JSON, RESULT_JSON]
    return "partial" if any((run_dir / name).exists() for name in started) else "pending"


# --- one row ------------------------------------------------------------------------------------

# results.csv says finished / failed / pending; a started-but-unfinished run is pending there
# (``--dry-run`` tells partial from pending).
_CSV_STATUS = {"finished": "finished", "failed": "failed", "partial": "pending", "pending": "pending"}


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved training config as a plain dict ({} if missing or unreadable)."""
    try:
        data = tomllib.loads((run_dir / CONFIG_TOML).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def group_of(config: dict[str, Any]) -> str | None:
    """12 hex chars identifying the setting: the training config without the seed."""
    if not config:
        return None
    payload = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _config_hash(run_dir: Path, result: dict[str, Any]) -> str | None:
    if isinstance(result.get("config_hash"), str):
        return result["config_hash"]
    try:
        head = (run_dir / CONFIG_TOML).read_text(encoding="utf-8").splitlines()[:3]
    except (OSError, UnicodeDecodeError):
        return None
    for line in head:  # "# config_hash = 0123456789ab", written by train.config.to_toml
        if line.startswith("# config_hash = "):
            return line.split("=", 1)[1].strip()
    return None


def overrides_text(overrides: Any) -> str:
    """Overrides as compact, sorted JSON ('' when there are none): a stable table cell."""
    if not overrides:
        return ""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str)


def _size_text(size: Any) -> str | None:
    if isinstance(size, (list, tuple)) and size and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in size):
        return "x".join(str(v) for v in size)
    return None


def run_row(run_dir: Path, identity: dict[str, Any], measure: MeasureSpec | None = None) -> dict[str, Any]:
    """One results.csv row from a run directory (pending if it has nothing yet).

    Every field read from a file goes through ``strabench.io``'s typed accessors: a damaged or
    edited value (text where a number belongs, inf, 10**400, a list for a table, an escape code
    in a name) costs that field, never the row or the report."""
    from strabench.io import as_dict, as_int, as_number, as_text

    config = read_config(run_dir)
    result = read_json_object(run_dir / RESULT_JSON) or {}
    measured = read_json_object(run_dir / MEASURE_JSON) or {}
    status = _CSV_STATUS[run_status(run_dir, measure)]
    finished = status == "finished"
    device = as_text(result.get("device")) if finished and result.get("device") else as_text(config.get("device"))
    run_id = as_text(identity.get("run_id")) or run_dir.name
    row: dict[str, Any] = {
        "suite": as_text(identity.get("suite")), "variant": as_text(identity.get("variant")),
        "setting": as_text(identity.get("setting")) or None,  # the suite's [[settings]] name, if any
        "model": as_text(identity.get("model")) or as_text(config.get("model")),
        "overrides": as_text(overrides_text(config.get("model_overrides")), limit=2000),
        "data": as_text(config.get("data")), "profile": as_text(config.get("profile")),
        "train_input": _size_text(config.get("input_size")), "device": device,
        "seed": as_int(identity.get("seed"), minimum=0), "data_seed": as_int(config.get("data_seed"), minimum=0),
        "group": group_of(config), "config_hash": as_text(_config_hash(run_dir, result)),
        "hash": as_text(identity.get("hash")), "run_id": run_id, "status": status,
    }
    row["params"] = as_int(measured.get("params"), minimum=0)
    for convention, macs in as_dict(measured.get("macs")).items():
        if convention in MAC_CONVENTIONS:
            row[f"macs_{convention}"] = as_int(macs, minimum=0)
    if isinstance(measured.get("input"), list):
        row["input"] = _size_text(measured["input"][1:])
    latency = as_dict(measured.get("latency"))  # per-run timing of older runs; suites now time in latency.json
    row["latency_ms"] = as_number(latency.get("median_ms"))
    row["images_per_s"] = as_number(latency.get("images_per_s"))
    row["metrics"] = _numeric(result.get("metrics") if finished else None)
    # the same network evaluated before training (the engine's baseline): did the run learn?
    row["metrics_untrained"] = _numeric(result.get("metrics_untrained") if finished else None)
    row["metrics_ci"] = _intervals(result.get("metrics_ci95") if finished else None)
    row["test_size"] = {k: n for k, v in _numeric(result.get("test_size") if finished else None).items()
                        if (n := as_int(v, minimum=0)) is not None}
    row["train_time_s"] = as_number(result.get("train_time_s"))
    row["epochs"] = as_int(result.get("epochs"), minimum=0)
    row["config"] = f"{run_id}/{CONFIG_TOML}" if (run_dir / CONFIG_TOML).is_file() else None
    row["error"] = (as_text(result.get("reason")) or as_text(measured.get("error"))) if status == "failed" else None
    row["code"] = run_code(run_dir, result) if finished else None
    return row


def run_code(run_dir: Path, result: dict[str, Any] | None = None) -> str | None:
    """The code that made the run (``strabench.provenance``): its code id, or the ids of its
    segments joined by "+" when it mixed code; from result.json, else env.json; None if neither
    records one. Compare runs by this, never by the run id (which is the configuration's)."""
    from strabench.provenance import env_segments, run_code_ids

    result = read_json_object(run_dir / RESULT_JSON) if result is None else result
    ids = result.get("code_ids") if isinstance(result, dict) else None
    if not (isinstance(ids, list) and ids and all(isinstance(i, str) and i.isalnum() and len(i) <= 64 for i in ids)):
        ids = run_code_ids(env_segments(run_dir))
    return "+".join(ids) or None


def _numeric(values: Any) -> dict[str, float]:
    """The finite numbers of a metrics table, names as printable text."""
    from strabench.io import as_dict, as_number, as_text

    numbers = {as_text(k) or "?": as_number(v) for k, v in as_dict(values).items()}
    return {k: v for k, v in numbers.items() if v is not None}


def _intervals(values: Any) -> dict[str, tuple[float, float]]:
    from strabench.io import as_dict, as_number, as_text

    out = {}
    for name, pair in as_dict(values).items():
        if isinstance(pair, list) and len(pair) == 2 and all(as_number(v) is not None for v in pair):
            out[as_text(name) or "?"] = (float(pair[0]), float(pair[1]))
    return out


# --- the union of every run ---------------------------------------------------------------------


def run_dirs(suite_dir: Path) -> list[Path]:
    """Every run directory in the suite directory (those with a run.json), sorted by name."""
    if not suite_dir.is_dir():
        return []
    return sorted(p.parent for p in suite_dir.glob(f"*/{RUN_JSON}"))


def stored_rows(
    suite_dir: Path, plan: "RunPlan | None" = None, planned: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Rows of every run on disk, plus the plan's runs that have no directory yet (pending).

    ``planned``: identities of planned runs as ``plan.json`` lists them (when there is no
    ``RunPlan`` at hand, e.g. in ``strabench report``); those without a directory are pending.

    Order: the plan's variants in suite order (runs of other plans of a variant beside it),
    then variants only older plans had; within a variant by seed, then run id.
    """
    rows: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs(suite_dir):
        identity = read_json_object(run_dir / RUN_JSON) or {}
        if not isinstance(identity.get("variant"), str):
            continue
        identity = {**identity, "run_id": run_dir.name}
        measure = measure_of(identity)
        rows[run_dir.name] = run_row(run_dir, identity, measure)
    order: dict[str, int] = {}
    if plan is not None:
        for spec in plan.runs:
            order.setdefault(spec.variant, len(order))
            if spec.run_id not in rows:
                identity = spec.identity()
                rows[spec.run_id] = run_row(plan.run_dir(spec), identity, spec.measure)
    for identity in planned:
        run_id = identity.get("run_id")
        if isinstance(run_id, str) and isinstance(identity.get("variant"), str) and run_id not in rows:
            order.setdefault(identity["variant"], len(order))
            rows[run_id] = run_row(suite_dir / run_id, identity)
    for row in sorted(rows.values(), key=lambda r: str(r["run_id"])):
        order.setdefault(str(row["variant"]), len(order))

    def key(row: dict[str, Any]) -> tuple[int, int, str]:
        seed = row.get("seed")
        return order[str(row["variant"])], seed if isinstance(seed, int) else -1, str(row["run_id"])

    return sorted(rows.values(), key=key)


def measure_of(identity: dict[str, Any]) -> MeasureSpec | None:
    """The measure settings a run.json (or plan entry) records; None when missing or damaged
    (an unknown key, a wrong type): a reader never fails on what it reads."""
    raw = identity.get("measure")
    if not isinstance(raw, dict):
        return None
    try:
        return MeasureSpec.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError, StrabenchError):
        return None


# --- results.csv --------------------------------------------------------------------------------


def metric_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The metric columns present, known ones in the paper's order, then the rest, 'mean' last."""
    present: set[str] = set()
    for row in rows:
        present.update(row.get("metrics", {}))
    known = [m for m in METRIC_ORDER if m in present]
    rest = sorted(m for m in present if m not in METRIC_ORDER and m != "mean")
    return known + rest + (["mean"] if "mean" in present else [])


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The results.csv text: identity and measure columns, the metrics, their intervals, tail."""
    metrics = metric_columns(rows)
    untrained = [m for m in metrics if any(m in row.get("metrics_untrained", {}) for row in rows)]
    with_ci = [m for m in metrics if any(m in row.get("metrics_ci", {}) for row in rows)]
    with_n = [m for m in metrics if any(m in row.get("test_size", {}) for row in rows)]
    columns = [
        *BASE_COLUMNS, *metrics,
        *(c for m in with_ci for c in (m + CI_LOW, m + CI_HIGH)), *(m + N_TEST for m in with_n),
        *(m + UNTRAINED for m in untrained), *TAIL_COLUMNS,
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    nested = ("metrics", "metrics_untrained", "metrics_ci", "test_size")
    for row in rows:
        flat = {k: ("" if v is None else v) for k, v in row.items() if k not in nested}
        flat.update({m: row["metrics"].get(m, "") for m in metrics})
        for m in with_ci:
            low, high = row.get("metrics_ci", {}).get(m, ("", ""))
            flat[m + CI_LOW], flat[m + CI_HIGH] = low, high
        flat.update({m + N_TEST: row.get("test_size", {}).get(m, "") for m in with_n})
        flat.update({m + UNTRAINED: row.get("metrics_untrained", {}).get(m, "") for m in untrained})
        writer.writerow(flat)
    return buffer.getvalue()


def write_results_csv(plan: "RunPlan") -> list[dict[str, Any]]:
    """Rebuild ``results.csv`` from every run directory (and the plan's pending runs), atomically."""
    from strabench.io import atomic_write_text

    rows = stored_rows(plan.out_dir, plan)
    atomic_write_text(plan.out_dir / RESULTS_CSV, rows_to_csv(rows))
    return rows


_NUMERIC = ("seed", "data_seed", "params", "macs_paper", "macs_fvcore", "macs_ptflops", "latency_ms", "images_per_s",
            "train_time_s", "epochs")


def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back into rows (numbers as floats, metrics in dicts); older layouts load too.

    Read with ``strabench.io.read_csv_records``: a file that is not UTF-8 csv is refused in one
    line (``DataError``); a cell that is not a finite number where one belongs is empty."""
    from strabench.io import as_text, read_csv_records

    columns, records = read_csv_records(path)
    known = {*BASE_COLUMNS, *TAIL_COLUMNS}
    metric_names = [c for c in columns if c not in known and not c.endswith(METRIC_SUFFIXES)]
    rows = []
    for record in records:
        row: dict[str, Any] = {k: (as_text(record.get(k)) or None) for k in (*BASE_COLUMNS, *TAIL_COLUMNS)}
        for key in _NUMERIC:
            row[key] = _number(row.get(key))
        for key in ("seed", "data_seed", "epochs"):
            if row[key] is not None and float(row[key]).is_integer():
                row[key] = int(row[key])
        row["overrides"] = row.get("overrides") or ""
        if not row.get("run_id"):
            seed = row["seed"] if isinstance(row["seed"], int) else 0
            row["run_id"] = f"{row['variant']}-s{seed}-{row['hash']}"

        def values(suffix: str, rec: dict[str, Any] = record) -> dict[str, float]:
            found = {m: _number(rec.get(m + suffix)) for m in metric_names}
            return {m: v for m, v in found.items() if v is not None}

        row["metrics"] = values("")
        row["metrics_untrained"] = values(UNTRAINED)
        lows, highs = values(CI_LOW), values(CI_HIGH)
        row["metrics_ci"] = {m: (lows[m], highs[m]) for m in lows if m in highs}
        row["test_size"] = {m: int(v) for m, v in values(N_TEST).items()}
        rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    from strabench.io import as_number, parse_number

    return parse_number(value) if isinstance(value, str) else as_number(value)

"""Run a suite: variants x seeds, each in its own hashed directory, resumable and shardable.

Why the design looks like this:

* A run's directory is ``<out>/<suite>/<variant>-s<seed>-<hash>`` where the hash covers the
  resolved TrainConfig and the measure settings. Change a setting and the run is new; keep it
  and a finished run is skipped, an interrupted one resumed from its checkpoint.
* ``results.csv`` is rebuilt from the run directories after every run and written atomically,
  so it is always consistent with them, a kill loses at most the run in flight, and shards that
  wrote into the same directory (or were copied together) merge by themselves.
* A run that fails (NaN loss, bad data ...) is recorded as failed with its reason and the suite
  goes on: one diverging seed must not cost a night of other runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.env import git_state
from strabench.errors import ConfigError, LockError, StrabenchError, WriteError
from strabench.io import read_json_object
from strabench.suite.config import LatencySpec
from strabench.suite.jobfiles import sweep_job_files
from strabench.suite.plan import (  # noqa: F401 - the plan's names, re-exported for callers of the runner
    ENV_JSON, ERROR_LOG, LATENCY_JSON, PLAN_JSON, STATUSES, RunPlan, RunSpec, _tuples, parse_shard, plan_runs, run_hash,
    shard_runs,
)
from strabench.suite.store import (  # noqa: F401 - the store's names, re-exported for callers of the runner
    CHECKPOINT_FILES, MEASURE_JSON, RESULT_JSON, RESULTS_CSV, RUN_JSON, metric_columns, needs_measure, run_row,
    run_status, rows_to_csv, stored_rows, write_results_csv,
)

if TYPE_CHECKING:
    from strabench.train.config import TrainConfig

# --- measuring ----------------------------------------------------------------------------------


def measure_model(spec: RunSpec) -> dict[str, Any]:
    """Params and MACs per convention of the run's model at the measure input (latency: per suite)."""
    from strabench.measure.flops import count_macs
    from strabench.measure.params import count_params
    from strabench.registry import create_model, model_info

    info = model_info(spec.model)
    measure = spec.measure
    size = info.input_size(tuple(measure.input) if measure.input else None)
    overrides = _tuples(dict(spec.config.model_overrides or {}))
    model = create_model(spec.model, task=spec.config.task, **overrides)
    fixed = getattr(model, "fixed_input", None)
    if fixed is not None and tuple(fixed) != size:  # heads sized for the input (face models)
        model = create_model(spec.model, task=spec.config.task, **{**overrides, "input_size": size})
    shape = (info.default_input[0], *size)
    result: dict[str, Any] = {"input": list(shape)}
    if measure.params:
        result["params"] = count_params(model)
    macs: dict[str, int] = {}
    uncounted: dict[str, list[str]] = {}
    for convention in measure.macs:
        count = count_macs(model, shape, convention)
        macs[convention] = int(count.total)
        if count.uncounted:
            uncounted[convention] = list(count.uncounted)
    if measure.macs:
        result["macs"] = macs
        result["uncounted"] = uncounted
    return result


def latency_file(index: int) -> str:
    """Where the suite's ``index``-th timing goes: ``latency.json``, then ``latency-2.json`` ..."""
    return LATENCY_JSON if index == 0 else f"latency-{index + 1}.json"


def latency_settings(plan: RunPlan, timing: LatencySpec | None = None) -> dict[str, Any] | None:
    """What a suite's latency measurement depends on (None when the suite times nothing);
    ``timing``: one of the suite's timings (default: its first, ``measure.latency``).

    ``variant_overrides`` (present only when a variant has overrides or ``replace`` blocks, so a
    suite without any keeps the settings, and its ``latency.json``, it always had): each such
    variant's ``model_overrides``, which the timed module is built with."""
    lat = timing or plan.suite.measure.latency
    if lat is None:
        return None
    variants = [v for v in plan.suite.variants if any(r.variant == v.name for r in plan.runs)]
    settings = {
        **lat.as_dict(),
        "rounds": max(lat.rounds, MIN_LATENCY_ROUNDS),
        "measure_input": list(plan.suite.measure.input) if plan.suite.measure.input else None,
        "baseline": plan.suite.baseline,
        "variants": {v.name: v.model for v in variants},
    }
    overridden = {v.name: _plain_overrides(v.model_overrides()) for v in variants if v.model_overrides()}
    if overridden:
        settings["variant_overrides"] = overridden
    return settings


def _plain_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """JSON's view of ``model_overrides`` (tuples as lists), so settings compare equal to their file."""
    return json.loads(json.dumps(overrides))


# Fewer rounds give no spread of the ratio; rounds are cheap at the suite's usual batch 1.
MIN_LATENCY_ROUNDS = 3


def measure_suite_latency(plan: RunPlan, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every variant's latency as a ratio to the suite's baseline, interleaved in one process.

    ``strabench.measure.latency.benchmark_models`` measures the baseline right before and after
    each variant (B v1 B v2 ... B) in every round; a variant's ratio is the median over rounds
    of its time over the mean of the two baseline times around it, and ``ratio_rounds`` keeps
    each round's ratio (the spread). Milliseconds are machine- and load-dependent: compare
    ratios.

    Each variant is timed as its runs train it: a variant with ``overrides`` or ``replace``
    blocks is built with them (``timed_models``) and gets its own row, even when it shares the
    registered model of another variant or of the baseline.
    """
    from strabench.measure.latency import STOCK_SUFFIX, benchmark_models

    settings = settings or latency_settings(plan)
    assert settings is not None
    variants: dict[str, str] = settings["variants"]
    size = tuple(settings["input"] or settings["measure_input"] or ()) or None
    items, of_variant, size = timed_models(plan, settings, size)
    rows = benchmark_models(
        items, baseline=items[of_variant[plan.suite.baseline]], mode=settings["mode"], batch=settings["batch"],
        input_size=size, device="cpu", threads=settings["threads"], min_run_time=settings["min_run_time"],
        rounds=settings["rounds"],
        kernels="both",  # each model with StRA's kernels and in plain torch ops (stock_* fields)
    )
    rows = [row for row in rows if not row["model"].endswith(STOCK_SUFFIX)]  # their ratios are on the fused rows
    if len(rows) != len(items):  # one row per distinct item, in order (the baseline is among them)
        raise RuntimeError(f"benchmark_models returned {len(rows)} rows for {len(items)} models")
    keep = ("median_ms", "iqr_ms", "samples", "images_per_s", "ratio_to_baseline", "ratio_rounds", "noisy",
            "noise", "batch", "input", "mode", "threads", "peak_mem_mb", "note", "implementation",
            "stock_ratio_to_baseline", "stock_ratio_rounds", "stock_implementation", "stock_noisy")
    overridden = settings.get("variant_overrides", {})
    measured: dict[str, Any] = {}
    for name, model in variants.items():
        row = rows[of_variant[name]]
        measured[name] = {"model": model, **({"model_overrides": overridden[name]} if name in overridden else {}),
                          **{k: row.get(k) for k in keep}}
    first = rows[0]
    return {
        "settings": settings,
        "baseline": plan.suite.baseline,
        "variants": measured,
        "environment": {**{k: first.get(k) for k in ("cpu", "cpu_count", "torch_version", "allocator", "load_avg", "busy_cores", "timestamp")},
                        **dict(zip(("git_commit", "git_dirty"), git_state()))},
    }


def timed_models(
    plan: RunPlan, settings: dict[str, Any], size: tuple[int, int] | None
) -> tuple[list[Any], dict[str, int], tuple[int, int] | None]:
    """(what to time, variant -> its index there, the input size): a variant without overrides is
    timed by its registered name (as ever); one with them by the module its runs train, built with
    its ``model_overrides`` (``replace`` blocks included) for the timing input. A module has no
    default input, so then ``size`` falls back to the variants' common default."""
    from strabench.measure.report import build_for_input
    from strabench.registry import model_info
    from strabench.suite.checks import model_key

    overridden: dict[str, dict[str, Any]] = settings.get("variant_overrides", {})
    if overridden and size is None:
        defaults = {model_info(model).input_size() for model in settings["variants"].values()}
        if len(defaults) != 1:
            raise ConfigError(
                f"{plan.suite.path}: measure.latency: variants with overrides are timed as built modules, which need "
                f"one input size; the variants' defaults differ ({', '.join(f'{h}x{w}' for h, w in sorted(defaults))}): "
                f"set measure.input or measure.latency.input"
            )
        (size,) = defaults
    items: list[Any] = []
    index: dict[str, int] = {}
    of_variant: dict[str, int] = {}
    for name, model in settings["variants"].items():
        overrides = overridden.get(name)
        key = model_key(model, overrides or {})
        if key not in index:
            if overrides:
                kwargs = _tuples(dict(overrides))
                replace = kwargs.pop("replace", None)
                assert size is not None
                items.append(build_for_input(model, size, task=plan.suite.task, replace=replace, overrides=kwargs))
            else:
                items.append(model)
            index[key] = len(items) - 1
        of_variant[name] = index[key]
    return items, of_variant, size


# --- environment --------------------------------------------------------------------------------


def environment(device: str) -> dict[str, Any]:
    """What produced a run: versions, device, threads, commit, host."""
    import torch

    from strabench import __version__

    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "strabench": __version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "hostname": socket.gethostname(),
    }


# --- executing ----------------------------------------------------------------------------------


class SuiteListener:
    """What the runner tells its view; also the engine's ProgressHook. Every method optional."""

    def on_suite_start(self, plan: RunPlan, todo: Sequence[RunSpec]) -> None: ...
    def on_run_start(self, index: int, total: int, spec: RunSpec, status: str) -> None: ...
    def on_phase(self, spec: RunSpec, phase: str) -> None: ...
    def on_epoch_start(self, epoch: int, total: int) -> None: ...
    def on_step(self, step: int, total_steps: int, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, record: dict) -> None: ...
    def on_eval(self, name: str, metrics: dict) -> None: ...
    def on_run_end(self, spec: RunSpec, status: str, row: dict[str, Any]) -> None: ...
    def on_skip(self, spec: RunSpec, status: str) -> None: ...
    def on_suite_phase(self, text: str) -> None: ...


@dataclass
class SuiteOutcome:
    """What happened: rows of results.csv, statuses of the runs this process attempted."""

    plan: RunPlan
    rows: list[dict[str, Any]]
    attempted: dict[str, str]  # run_id -> status after the attempt
    skipped: list[str]
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [run_id for run_id, status in self.attempted.items() if status == "failed"]

    @property
    def locked(self) -> list[str]:
        """Runs another process was training (their directory was locked): not attempted."""
        return [run_id for run_id, status in self.attempted.items() if status == "locked"]


def _fit(config: "TrainConfig", out_dir: Path, *, resume: bool, progress: Any, keep_checkpoints: str = "last") -> dict[str, Any]:
    """The engine's fit (indirected so tests can substitute a fake via monkeypatch)."""
    from strabench.train.engine import fit

    return fit(config, out_dir, resume=resume, progress=progress, keep_checkpoints=keep_checkpoints)


def dist_rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"environment variable RANK={os.environ.get('RANK')!r} is not an integer") from None


def execute_run(
    spec: RunSpec, run_dir: Path, listener: SuiteListener | None = None, *, rank: int = 0, fit: Any = None,
    keep_checkpoints: str = "last", allow_mixed: bool = False, fresh: bool = False,
) -> str:
    """Train (if asked) then measure one run; returns finished | failed | locked (another process has it).

    Training comes first so that under torchrun every rank calls ``fit`` for the same runs in
    the same order; only rank 0 measures and writes files. A failure inside the run is recorded
    (result.json or measure.json, status failed, with the reason; unexpected errors also get
    their traceback in error.log) and the caller goes on; KeyboardInterrupt propagates so the
    run stays resumable. ``fit`` replaces the engine's ``fit`` (executors pass theirs on).
    ``allow_mixed`` lets a checkpoint other code trained be resumed (``strabench.provenance``);
    ``fresh`` starts the run over (``--rerun-stale``: a finished run that other code made).
    """
    listener = listener or SuiteListener()
    engine_fit = fit if fit is not None else _fit
    keep = {"keep_checkpoints": keep_checkpoints} if keep_checkpoints != "last" else {}  # substitutes may not take it
    if allow_mixed:
        keep["allow_mixed"] = True
    if fresh and rank == 0:
        _forget_measurements(run_dir)

    def train(config: Any, out_dir: Path, *, resume: bool, progress: Any) -> Any:
        return engine_fit(config, out_dir, resume=resume and not fresh, progress=progress, **keep)
    if rank != 0:  # a torchrun worker: train alongside rank 0, which records everything
        if spec.measure.accuracy:
            try:
                train(spec.config, run_dir, resume=True, progress=None)
            except Exception:  # noqa: BLE001 - rank 0 raised the same error and records it
                return "failed"
        return "finished"
    from strabench.io import atomic_write_json, atomic_write_text, ensure_directory
    from strabench.train.config import config_hash, to_toml

    ensure_directory(run_dir)
    identity = {**spec.identity(), "measure": spec.measure.as_dict()}
    if read_json_object(run_dir / RUN_JSON) != identity:
        atomic_write_json(run_dir / RUN_JSON, identity)
    try:
        atomic_write_text(run_dir / "config.toml", to_toml(spec.config))
        if spec.measure.accuracy:
            listener.on_phase(spec, "training")
            train(spec.config, run_dir, resume=True, progress=listener)
            result = read_json_object(run_dir / RESULT_JSON)
            if result is None or result.get("status") != "finished":
                raise StrabenchError(f"the engine returned without writing a finished {run_dir / RESULT_JSON}")
    except LockError as exc:  # another process trains this very run: leave its files alone
        listener.on_phase(spec, f"skipped, {exc}")
        return "locked"
    except WriteError:  # disk full / read-only: every later run would fail alike; stop, resumable
        raise
    except StrabenchError as exc:
        _record_failure(spec, run_dir, exc, with_traceback=False)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a bug in one run is recorded (with traceback) and the suite goes on
        _record_failure(spec, run_dir, exc, with_traceback=True)
        return "failed"
    finally:
        _complete_env(run_dir, spec)
    measured = read_json_object(run_dir / MEASURE_JSON)
    if needs_measure(spec.measure) and (measured is None or measured.get("error")):
        listener.on_phase(spec, "measuring")
        try:
            atomic_write_json(run_dir / MEASURE_JSON, measure_model(spec))
        except StrabenchError as exc:
            atomic_write_json(run_dir / MEASURE_JSON, {"error": _reason(exc)})
            return "failed"
        except Exception as exc:  # noqa: BLE001 - as above
            atomic_write_text(run_dir / ERROR_LOG, "".join(traceback.format_exception(exc)))
            atomic_write_json(run_dir / MEASURE_JSON, {"error": _reason(exc), "traceback": ERROR_LOG})
            return "failed"
    if not spec.measure.accuracy:
        atomic_write_json(
            run_dir / RESULT_JSON,
            {"status": "finished", "model": spec.model, "task": spec.config.task, "seed": spec.seed,
             "config_hash": config_hash(spec.config), "metrics": {}, "run_id": spec.run_id},
        )
    return "finished"


def _reason(exc: BaseException) -> str:
    from strabench.usercode import user_code_failure

    return user_code_failure(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _complete_env(run_dir: Path, spec: RunSpec) -> None:
    """env.json with what the engine's lacks (git commit, threads); written, as the run's one
    segment with its code identity (``strabench.provenance``), if the engine wrote none."""
    from strabench.io import atomic_write_json
    from strabench.provenance import code_identity, record_segment

    env = read_json_object(run_dir / ENV_JSON)
    if env is None:
        record_segment(run_dir, environment(str(spec.config.device)), code_identity(str(spec.config.device)))
        return
    extra = {k: v for k, v in environment(str(spec.config.device)).items() if k not in env}
    if extra:
        atomic_write_json(run_dir / ENV_JSON, {**env, **extra})


def _forget_measurements(run_dir: Path) -> None:
    """Before a run starts over: the runner's own files of its previous version (the engine
    clears its own with ``resume=False``)."""
    for name in (MEASURE_JSON, RESULT_JSON, ERROR_LOG, ENV_JSON):
        (run_dir / name).unlink(missing_ok=True)


def _record_failure(spec: RunSpec, run_dir: Path, exc: BaseException, *, with_traceback: bool) -> None:
    from strabench.io import atomic_write_json, atomic_write_text

    reason = _reason(exc)
    if with_traceback:
        atomic_write_text(run_dir / ERROR_LOG, "".join(traceback.format_exception(exc)))
    atomic_write_json(
        run_dir / RESULT_JSON,
        {"status": "failed", "reason": reason, "error_type": type(exc).__name__, "model": spec.model,
         "task": spec.config.task, "seed": spec.seed, "run_id": spec.run_id,
         "traceback": ERROR_LOG if with_traceback else None},
    )


def run_suite(plan: RunPlan, listener: SuiteListener | None = None) -> SuiteOutcome:
    """Execute the plan's selected runs under the suite lock; results.csv after every run.

    Ctrl-C ends the loop cleanly (the run in flight stays resumable) with ``interrupted=True``.
    Under torchrun, rank 0 does this; the other ranks only join each training run's ``fit``.
    Once the lock is held, temp files that killed writes left in the suite directory are
    removed (``strabench.locks.remove_stale_temps``). A file that cannot be written (disk full,
    read-only) ends the suite with a ``WriteError`` naming it.
    """
    rank = dist_rank()
    if rank != 0:
        return _run_as_worker(plan, rank)
    listener = listener or SuiteListener()
    start = time.monotonic()
    attempted: dict[str, str] = {}
    interrupted = False
    with suite_session(plan, listener) as (todo, skipped):
        try:
            for index, spec in enumerate(todo, start=1):
                run_dir = plan.run_dir(spec)
                listener.on_run_start(index, len(todo), spec, run_status(run_dir, spec.measure))
                status = execute_run(spec, run_dir, listener, **run_options(plan, spec))
                attempted[spec.run_id] = status
                rows = write_results_csv(plan)
                listener.on_run_end(spec, status, next(r for r in rows if r["run_id"] == spec.run_id))
            time_suite(plan, listener)
        except KeyboardInterrupt:
            interrupted = True
        rows = write_results_csv(plan)
    return SuiteOutcome(plan, rows, attempted, skipped, interrupted, time.monotonic() - start)


@contextlib.contextmanager
def suite_session(plan: RunPlan, listener: SuiteListener) -> Iterator[tuple[list[RunSpec], list[str]]]:
    """The suite (or shard) lock held, stale temps swept, plan.json and results.csv written;
    on the way out, job files of a finished suite swept.

    Yields the runs still to do and the ids of the selected runs already finished; whatever
    executes the runs (this process, ``--jobs`` workers) works inside it.
    """
    from strabench.io import atomic_write_json, ensure_directory
    from strabench.locks import acquire_lock, remove_stale_temps

    ensure_directory(plan.out_dir)
    lock_dir = plan.out_dir if plan.shard is None else plan.out_dir / ".locks" / f"shard-{plan.shard[0]}-of-{plan.shard[1]}"
    with acquire_lock(lock_dir):
        remove_stale_temps(plan.out_dir)
        atomic_write_json(plan.out_dir / PLAN_JSON, plan.as_dict())
        todo = _todo(plan)
        skipped = [spec.run_id for spec in plan.selected if spec not in todo]
        for spec in plan.selected:
            if spec not in todo:
                listener.on_skip(spec, "finished")
        write_results_csv(plan)
        listener.on_suite_start(plan, todo)
        yield todo, skipped
        sweep_job_files(plan)  # job files of a suite now finished (strabench.suite.jobfiles)


def time_suite(plan: RunPlan, listener: SuiteListener) -> None:
    """Suite latency (``latency.json``, and ``latency-2.json`` ... for further timings), once per
    settings: by the whole run or shard 1 of N."""
    from strabench.io import atomic_write_json

    if plan.shard is not None and plan.shard[0] != 1:
        return
    for index, timing in enumerate(plan.suite.measure.latencies):
        settings = latency_settings(plan, timing)
        assert settings is not None
        previous = read_json_object(plan.out_dir / latency_file(index))
        if previous is not None and previous.get("settings") == settings and not previous.get("error"):
            continue
        listener.on_suite_phase(f"timing {len(settings['variants'])} variant(s) against {plan.suite.baseline}, interleaved "
                                f"(batch {settings['batch']}, {settings['mode']})")
        try:
            measured = measure_suite_latency(plan, settings)
        except StrabenchError as exc:
            measured = {"settings": settings, "error": _reason(exc)}
        atomic_write_json(plan.out_dir / latency_file(index), measured)


def _todo(plan: RunPlan) -> list[RunSpec]:
    """The selected runs not finished yet (failed ones are retried), in plan order; with
    ``plan.rerun_stale`` also the finished ones other code made (``stale_runs``)."""
    stale = {s.run_id for s in stale_runs(plan)} if plan.rerun_stale else set()
    return [s for s in plan.selected if run_status(plan.run_dir(s), s.measure) != "finished" or s.run_id in stale]


def stale_runs(plan: RunPlan) -> list[RunSpec]:
    """The selected finished runs that code other than this one made (or mixed), by what their
    files record (``strabench.provenance``); runs that record no code are not counted."""
    from strabench.provenance import code_identity
    from strabench.suite.store import run_code

    here: dict[str, str] = {}
    stale = []
    for spec in plan.selected:
        run_dir = plan.run_dir(spec)
        if run_status(run_dir, spec.measure) != "finished":
            continue
        recorded = run_code(run_dir)
        if not recorded:
            continue
        kind = str((read_json_object(run_dir / RESULT_JSON) or {}).get("device") or spec.config.device).split(":")[0]
        if kind not in here:
            here[kind] = code_identity(kind)["code_id"]
        if recorded != here[kind]:
            stale.append(spec)
    return stale


def run_options(plan: RunPlan, spec: RunSpec) -> dict[str, Any]:
    """``execute_run``'s keywords for ``spec`` under ``plan`` (checkpoints kept, code mixing, starting over)."""
    fresh = plan.rerun_stale and run_status(plan.run_dir(spec), spec.measure) == "finished"
    return {"keep_checkpoints": plan.keep_checkpoints, "allow_mixed": plan.allow_mixed, "fresh": fresh}


def _run_as_worker(plan: RunPlan, rank: int) -> SuiteOutcome:
    """A torchrun rank > 0: the same training runs as rank 0, in the same order, no files."""
    start = time.monotonic()
    attempted: dict[str, str] = {}
    interrupted = False
    try:
        for spec in _todo(plan):
            if spec.measure.accuracy:
                attempted[spec.run_id] = execute_run(spec, plan.run_dir(spec), rank=rank, **run_options(plan, spec))
    except KeyboardInterrupt:
        interrupted = True
    return SuiteOutcome(plan, [], attempted, [], interrupted, time.monotonic() - start)


def dry_run_rows(plan: RunPlan) -> list[dict[str, Any]]:
    """What ``--dry-run`` lists: each selected run with done / pending / partial / failed."""
    label = {"finished": "done", "failed": "failed", "partial": "partial", "pending": "pending"}
    return [
        {"run_id": s.run_id, "variant": s.variant, "model": s.model, "seed": s.seed, "hash": s.hash,
         "status": label[run_status(plan.run_dir(s), s.measure)], "dir": str(plan.run_dir(s))}
        for s in plan.selected
    ]

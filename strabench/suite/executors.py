"""Executors: where a suite's runs execute -- N local worker processes, or SLURM jobs via submitit.

Every executor runs a run the same way (``RunJob``): take the run's lock
(``<suite>/.locks/run-<id>``, so two workers never run the same run, whoever started them),
record ``state.json`` (``strabench.suite.status``), call ``runner.execute_run`` (which resumes
from the run's checkpoint), record the outcome. Results therefore land in the same run
directories whatever ran them, and ``results.csv`` is rebuilt from those directories
(``runner.write_results_csv``) under the suite lock, so a suite can be finished by a mix of
local and cluster runs.

* ``run_parallel`` (``--executor local --jobs N``): up to N worker subprocesses at once, each
  on its own GPU (``CUDA_VISIBLE_DEVICES``) when the runs use CUDA, else on ``cores // N``
  torch threads. This process holds the suite lock and rewrites results.csv as runs end. A
  worker gets its job through a pipe from this process (never a file: see
  ``strabench.suite.jobfiles``) and dies with it (``strabench.signals.die_with_parent``).
* ``submit_jobs`` (``--executor slurm``): one submitit job per pending run, submitted as one
  job array. ``RunJob.checkpoint`` is submitit's checkpoint hook: on preemption or time-out
  the job is requeued and resumes from the run's last checkpoint (the engine's ``resume``);
  a run already finished is never run (or counted) again. submitit pickles the jobs into the
  suite's user-private job folder, outside the results folder (``strabench.suite.jobfiles``).
  ``submitit-local`` is the same path
  through submitit's ``LocalExecutor`` (jobs are local processes), to try a setup without a
  cluster. A job with ``gpus_per_node > 1`` runs one task per GPU under torchrun-style
  variables (``submitit.helpers.TorchDistributedEnvironment``): the engine's DDP path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError, LockError
from strabench.suite.jobfiles import submitit_folder, sweep_job_files
from strabench.suite.runner import (
    RunPlan, RunSpec, SuiteListener, SuiteOutcome, execute_run, run_options, run_status, stale_runs, suite_session,
    time_suite, write_results_csv,
)
from strabench.suite.status import run_lock_dir, run_state, write_state

log = logging.getLogger(__name__)

from strabench.suite.config import EXECUTOR_KEYS, EXECUTORS  # noqa: E402 - re-exported
#: Exit codes of a worker process (``python -m strabench.suite.executors -``).
EXIT_CODES = {"finished": 0, "failed": 1, "locked": 3, "interrupted": 130}
#: The environment variable that tells a worker its parent's pid (it dies with that process).
PARENT_ENV = "STRABENCH_WORKER_PARENT"


def _plain(value: Any) -> Any:
    """Mapping proxies (which do not pickle) -> dicts, recursively; tuples of them too."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def portable_plan(plan: RunPlan) -> RunPlan:
    """The plan with its suite's read-only mappings as dicts, so it pickles into a job."""
    suite = plan.suite
    # every field, so a mapping added to VariantSpec (replace) cannot slip through as a proxy
    variants = tuple(dataclasses.replace(v, **{f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}) for v in suite.variants)
    settings = tuple(dataclasses.replace(s, **{f.name: _plain(getattr(s, f.name)) for f in dataclasses.fields(s)}) for s in suite.settings)
    portable = dataclasses.replace(
        suite, train=_plain(suite.train), profile_train=_plain(suite.profile_train),
        executor=_plain(suite.executor), variants=variants, settings=settings,
    )
    return dataclasses.replace(plan, suite=portable)


def job_id_here() -> str | None:
    """The scheduler job this process runs in: SLURM's (array) id, or submitit-local's."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def refresh_results(plan: RunPlan, *, wait_s: float = 30.0) -> bool:
    """Rebuild results.csv under the suite lock, waiting up to ``wait_s`` for it; False if
    another process kept it (that process rebuilds results.csv itself before it lets go)."""
    from strabench.locks import acquire_lock

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with acquire_lock(plan.out_dir):
                write_results_csv(plan)
            return True
        except LockError as exc:
            if time.monotonic() >= deadline:
                log.info("results.csv left to the suite lock's holder: %s", exc)
                return False
            time.sleep(1.0)


class RunJob:
    """One run, as a picklable callable: a local worker's job and a submitit job alike.

    ``checkpoint`` makes it a submitit checkpointable: on preemption or time-out, submitit calls
    it and requeues what it returns (this same job); the requeued job resumes the run from its
    last checkpoint. ``fit`` replaces the engine's ``fit`` (None: the engine).
    """

    def __init__(self, plan: RunPlan, spec: RunSpec, *, executor: str, threads: int | None = None,
                 refresh: bool = False, fit: Callable[..., Any] | None = None) -> None:
        self.plan = plan
        self.spec = spec
        self.executor = executor
        self.threads = threads
        self.refresh = refresh
        self.fit = fit

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir(self.spec)

    def __call__(self) -> str:
        from strabench.env import configure_process
        from strabench.suite.runner import dist_rank

        configure_process()  # the job's process entry point (a local worker or a submitit job)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        _export_distributed_env()
        rank = dist_rank()
        options = run_options(self.plan, self.spec)
        if rank != 0:  # another task of a multi-GPU job: train alongside rank 0
            return execute_run(self.spec, self.run_dir, rank=rank, fit=self.fit, **options)
        if run_status(self.run_dir, self.spec.measure) == "finished" and not (options["fresh"] and self._stale()):
            return "finished"  # a requeued job whose run had already finished: never twice
        try:
            lock = acquire_run_lock(run_lock_dir(self.plan.out_dir, self.spec.run_id))
        except LockError as exc:
            log.warning("%s: %s", self.spec.run_id, exc)
            return "locked"
        with lock:
            options = run_options(self.plan, self.spec)  # again, under the run's lock
            if options["fresh"] and not self._stale():
                return "finished"  # another job retrained it meanwhile
            previous = run_state(self.plan.out_dir, self.spec.run_id, self.run_dir)
            write_state(self.run_dir, "running", executor=self.executor, job_id=job_id_here(),
                        attempts=int(previous.get("attempts") or 0) + 1, reason=None)
            try:
                status = execute_run(self.spec, self.run_dir, rank=0, fit=self.fit, **options)
            except BaseException as exc:  # Ctrl-C, SIGTERM, submitit's requeue (SystemExit)
                write_state(self.run_dir, "interrupted", reason=f"{type(exc).__name__} during the run; resumes from its checkpoint")
                raise
            reason = run_state(self.plan.out_dir, self.spec.run_id, self.run_dir).get("reason")
            write_state(self.run_dir, status, reason=reason)
        if self.refresh:
            refresh_results(self.plan)
        return status

    def _stale(self) -> bool:
        """Whether this finished run was made by other code (``runner.stale_runs``)."""
        one = dataclasses.replace(self.plan, selected=(self.spec,))
        return bool(stale_runs(one))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on preemption / time-out: requeue this job unchanged (the run's own
        checkpoint, written by the engine every epoch, is what it resumes from)."""
        import submitit

        write_state(self.run_dir, "queued", reason="requeued after preemption or time-out")
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


#: How long a run's lock is waited for when its holder is a worker whose parent died (it is
#: stopping: ``strabench.signals.die_with_parent``), so that a run started right after the
#: parent was killed picks its runs up instead of calling them locked.
ORPHAN_WAIT_S = 30.0


def acquire_run_lock(directory: Path, *, wait_s: float = ORPHAN_WAIT_S) -> Any:
    """``acquire_lock(directory)``, waiting up to ``wait_s`` while the holder is an orphaned
    process of this machine (``strabench.lease.orphaned``); any other holder is refused at once."""
    from strabench.locks import acquire_lock, inspect_lock
    from strabench.lease import orphaned

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return acquire_lock(directory)
        except LockError:
            owner, verdict = inspect_lock(directory)
            dying = owner is not None and verdict is not None and verdict.alive and orphaned(owner)
            if not dying or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _export_distributed_env() -> None:
    """Inside a multi-task submitit job: RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* for the engine."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "RANK" in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export()


# --- local: N worker processes ------------------------------------------------------------------


def _uses_cuda(plan: RunPlan) -> int:
    """How many GPUs the runs may use here (0 when they run on the CPU)."""
    devices = {str(s.config.device) for s in plan.selected}
    if devices <= {"cpu"}:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_parallel(plan: RunPlan, jobs: int, listener: SuiteListener | None = None, *,
                 fit: Callable[..., Any] | None = None, poll_s: float = 0.5) -> SuiteOutcome:
    """Run the plan's pending runs in up to ``jobs`` worker processes at once (see module doc)."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    listener = listener or SuiteListener()
    start = time.monotonic()
    gpus = _uses_cuda(plan)
    slots: list[str | None] = [str(i) for i in range(min(jobs, gpus))] if gpus else [None] * jobs
    threads = max(1, (os.cpu_count() or 1) // len(slots))
    attempted: dict[str, str] = {}
    interrupted = False
    with suite_session(plan, listener) as (todo, skipped):
        portable = portable_plan(plan)
        queue = list(todo)
        running: dict[int, tuple[subprocess.Popen, RunSpec, int]] = {}
        started = 0
        try:
            while queue or running:
                for slot, device in enumerate(slots):
                    if slot in running or not queue:
                        continue
                    spec = queue.pop(0)
                    started += 1
                    listener.on_run_start(started, len(todo), spec, run_status(plan.run_dir(spec), spec.measure))
                    job = RunJob(portable, spec, executor="local", threads=None if device else threads, fit=fit)
                    running[slot] = (_start_worker(job, device, threads), spec, started)
                for slot, (process, spec, index) in list(running.items()):
                    code = process.poll()
                    if code is None:
                        continue
                    del running[slot]
                    status = next((s for s, c in EXIT_CODES.items() if c == code), "failed")
                    if status == "failed" and run_status(plan.run_dir(spec), spec.measure) != "failed":
                        _record_crash(plan, spec, code)
                    attempted[spec.run_id] = status
                    rows = write_results_csv(plan)
                    listener.on_run_end(spec, status, next((r for r in rows if r["run_id"] == spec.run_id), {}))
                time.sleep(poll_s)
            time_suite(plan, listener)  # once every worker is done: timing needs the machine to itself
        except KeyboardInterrupt:
            interrupted = True
            for process, _, _ in running.values():
                process.send_signal(signal.SIGINT)
            for process, _, _ in running.values():
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        rows = write_results_csv(plan)
    return SuiteOutcome(plan, rows, attempted, skipped, interrupted, time.monotonic() - start)


def _one_run(job: RunJob) -> RunJob:
    """``job`` with a plan holding only its own run: what the worker needs, small enough to pipe."""
    plan = dataclasses.replace(job.plan, runs=(job.spec,), selected=(job.spec,))
    return RunJob(plan, job.spec, executor=job.executor, threads=job.threads, refresh=job.refresh, fit=job.fit)


def _start_worker(job: RunJob, device: str | None, threads: int) -> subprocess.Popen:
    """A worker process for ``job``, which it reads from its stdin (a pipe only this process can
    write: no job file exists anywhere), its output in the run's worker.log."""
    from strabench.io import ensure_directory, open_for_append

    payload = pickle.dumps(_one_run(job))
    env = dict(os.environ)
    env[PARENT_ENV] = str(os.getpid())
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    else:
        env["OMP_NUM_THREADS"] = str(threads)
    run_dir = ensure_directory(job.run_dir)
    with open_for_append(run_dir / "worker.log") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "strabench.suite.executors", "-"], env=env,
                                   stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT)
    threading.Thread(target=_send_job, args=(process, payload), name=f"job to worker {process.pid}", daemon=True).start()
    return process


def _send_job(process: subprocess.Popen, payload: bytes) -> None:
    """Write the pickled job into the worker's stdin and close it (a worker that died first: its
    exit code tells the parent)."""
    assert process.stdin is not None
    try:
        process.stdin.write(payload)
        process.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _record_crash(plan: RunPlan, spec: RunSpec, code: int) -> None:
    """A worker that died without recording why (killed, out of memory): say so in state.json."""
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    write_state(plan.run_dir(spec), "interrupted", reason=f"worker process ended ({how}); see worker.log")


# --- SLURM through submitit ---------------------------------------------------------------------


def submitit_parameters(settings: Mapping[str, Any], suite_name: str) -> dict[str, Any]:
    """submitit ``update_parameters`` keywords from the [executor] table (+ CLI overrides)."""
    params: dict[str, Any] = {"name": f"strabench-{suite_name}", "nodes": 1}
    for key, value in settings.items():
        params[EXECUTOR_KEYS[key][1]] = _plain(value) if not isinstance(value, list) else list(value)
    gpus = int(settings.get("gpus_per_node", 0) or 0)
    params["tasks_per_node"] = max(gpus, 1)  # one task per GPU: DDP inside the job
    return params


def submit_jobs(plan: RunPlan, settings: Mapping[str, Any], *, cluster: str = "slurm", resubmit: bool = False,
                fit: Callable[..., Any] | None = None) -> tuple[list[tuple[RunSpec, Any]], dict[str, str]]:
    """Submit every selected run not finished, running or queued as one submitit job array.

    Returns (spec, submitit job) pairs and, for the runs left out, why. ``resubmit`` also
    submits runs whose state says queued (their job was cancelled, say).
    """
    import submitit

    from strabench.io import atomic_write_json, ensure_directory

    from strabench.locks import acquire_lock
    from strabench.suite.plan import PLAN_JSON

    ensure_directory(plan.out_dir)
    with acquire_lock(plan.out_dir):
        sweep_job_files(plan)
        atomic_write_json(plan.out_dir / PLAN_JSON, plan.as_dict())
        write_results_csv(plan)
    left_out: dict[str, str] = {}
    todo: list[RunSpec] = []
    for spec in plan.selected:
        state = run_state(plan.out_dir, spec.run_id, plan.run_dir(spec))
        if state["state"] == "finished" or state["state"] == "running" or state["state"] == "queued" and not resubmit:
            where = f" as job {state['job_id']}" if state.get("job_id") else f" on {state['host']}" if state.get("host") else ""
            left_out[spec.run_id] = f"{state['state']}{where}"
        else:
            todo.append(spec)
    if not todo:
        return [], left_out
    executor = submitit.AutoExecutor(folder=submitit_folder(plan.out_dir, plan.suite.name) / "%j", cluster=cluster)
    try:
        executor.update_parameters(**submitit_parameters(settings, plan.suite.name))
    except (NameError, ValueError, AssertionError) as exc:
        raise ConfigError(f"executor settings rejected by submitit: {' '.join(str(exc).split())}") from None
    portable = portable_plan(plan)
    with executor.batch():
        submitted = [(spec, executor.submit(RunJob(portable, spec, executor=cluster, refresh=True, fit=fit))) for spec in todo]
    for spec, job in submitted:
        write_state(plan.run_dir(spec), "queued", executor=cluster, job_id=str(job.job_id),
                    submitted_from=os.uname().nodename, reason=None)
    return submitted, left_out


def follow(plan: RunPlan, run_ids: Sequence[str], on_poll: Callable[[list[dict[str, Any]]], None], *,
           jobs: Sequence[Any] = (), poll_s: float = 2.0) -> list[dict[str, Any]]:
    """Poll the runs' states (``status.run_state``) until none is queued or running and every
    job in ``jobs`` is done; ``on_poll`` gets the rows each time. Returns the last rows."""
    wanted = set(run_ids)
    specs = [s for s in plan.selected if s.run_id in wanted]
    while True:
        rows = [run_state(plan.out_dir, s.run_id, plan.run_dir(s), {"measure": s.measure.as_dict()}) for s in specs]
        on_poll(rows)
        active = any(r["state"] in ("queued", "running") for r in rows)
        if all(_job_done(job) for job in jobs) if jobs else not active:
            return rows
        time.sleep(poll_s)


def _job_done(job: Any) -> bool:
    try:
        return bool(job.done())
    except Exception:  # noqa: BLE001 - sacct unavailable or flaky: judge by the run's files alone
        return True


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m strabench.suite.executors -``: run the RunJob its parent pipes into stdin.

    Only a pipe from the parent is read: a job file could be swapped by anyone who can write
    the results folder, and unpickling runs code (``strabench.suite.jobfiles``). The worker
    stops cleanly on SIGINT and SIGTERM, and gets SIGTERM when its parent dies.
    """
    from strabench.env import configure_process
    from strabench.signals import die_with_parent, stop_on_sigterm

    if list(argv) != ["-"]:
        print("usage: python -m strabench.suite.executors -  (the job comes from the parent's pipe)", file=sys.stderr)
        return 2
    with stop_on_sigterm():
        try:
            parent = int(os.environ.get(PARENT_ENV, ""))
        except ValueError:
            parent = None
        if parent is not None:
            die_with_parent(parent)
        configure_process()  # before torch starts its thread pool
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            job: RunJob = pickle.load(sys.stdin.buffer)  # from the parent's pipe (see above)
            sys.stdin.close()
            status = job()
        except KeyboardInterrupt:
            return EXIT_CODES["interrupted"]
    return EXIT_CODES.get(status, 1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(_worker_main(sys.argv[1:]))

__all__ = ["EXECUTORS", "EXECUTOR_KEYS", "RunJob", "follow", "portable_plan", "refresh_results",
           "run_parallel", "submit_jobs", "submitit_parameters"]

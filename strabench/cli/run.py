"""Run a suite (suites/*.toml): every variant x seed, resumable, with a live view.

Each run lives in <out>/<suite>/<variant>-s<seed>-<hash>/; a finished run is skipped, an
interrupted one resumed from its checkpoint, a changed setting makes a new run. results.csv is
rewritten after every run. --jobs N runs N at once (one GPU or cores/N threads each);
--executor slurm submits each pending run as a SLURM job (a job array, through submitit;
resources from the suite's [executor] table or the flags below), requeued and resumed on
preemption; --wait follows the jobs, `strabench status DIR` shows them from any host. KEY=VALUE
arguments (or --set KEY=VALUE) change the suite file for this command, checked as the file is:
`strabench run demo train.quick.epochs=3 seeds=[0,1]`; they become part of each run's config and
hash, and are recorded in its run.json (`strabench show RUN_DIR` prints them). Split a suite over
machines by hand with --shard K/N; `strabench report` merges what is there.
--until-decided adds seeds in rounds (up to --max-seeds, within --max-minutes of runs) until
every comparison with the baseline is better, worse, equivalent or the budget is spent, with
error control over the rounds (docs/statistics.md); --dry-run states the seeds each comparison
needs and their cost. Exit 0: all runs finished (or submitted); 1: some run failed; 2: bad
suite or options; 130: interrupted by Ctrl-C, 143: stopped by SIGTERM (rerun the same command
to resume; --jobs workers stop with this process, however it ends).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strabench.cli._complete import suite_names
from strabench.suite.runner import SuiteListener

if TYPE_CHECKING:
    from rich.console import Console

    from strabench.suite.runner import SuiteOutcome

    from strabench.suite.plan import RunPlan, RunSpec


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options also take comma-separated lists: --only a,b --only c."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def run_command(
    suite: Annotated[str, typer.Argument(autocompletion=suite_names, help="Suite file (suites/quick.toml) or the name of one in ./suites.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE changes to the suite file, checked like it: train.quick.epochs=3, seeds=[0,1], variants.stra.model=resnet50_sasa, +variants.NAME.model=M adds a variant, ~KEY deletes (see docs/cli.md).", show_default=False)] = None,
    out: Annotated[str, typer.Option("--out", help="Results root; the suite writes <out>/<suite name>/.")] = "results",
    profile: Annotated[str | None, typer.Option("--profile", help="quick or paper (default: the suite's).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Data spec overriding the suite's, e.g. market1501:/data/Market-1501.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these variants (repeat or comma-separate).")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="K/N: run the K-th of N deterministic slices of the runs.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and their status (done/pending/partial/failed); run nothing.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default: the suite's / auto).")] = None,
    seeds: Annotated[list[str] | None, typer.Option("--seeds", help="Seeds overriding the suite's: 3, 0,2,5 or a range 0-4 (repeatable).")] = None,
    keep_checkpoints: Annotated[str, typer.Option("--keep-checkpoints", help="What each finished run keeps: last (checkpoint.pt), best (checkpoint.best.pt) or none; while a run is in progress its last two are kept for resuming.")] = "last",
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the runs as JSON.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine), slurm (a job per run via submitit) or submitit-local (the slurm path as local processes).")] = "local",
    jobs: Annotated[int, typer.Option("--jobs", help="local: runs at once, each on its own GPU, or on cores/N CPU threads.")] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="slurm: follow the jobs until they end (default: return once submitted).")] = False,
    resubmit: Annotated[bool, typer.Option("--resubmit", help="slurm: also submit runs already queued (their job was cancelled).")] = False,
    allow_mixed: Annotated[bool, typer.Option("--allow-mixed", help="Resume runs whose checkpoint other code trained (another strabench, torch or kernel); the mix is recorded in env.json and flagged by report. Default: such runs are refused.")] = False,
    rerun_stale: Annotated[bool, typer.Option("--rerun-stale", help="Retrain finished runs that other code made (default: keep them; run says which they are).")] = False,
    break_lock: Annotated[bool, typer.Option("--break-lock", help="First delete the suite's and the selected runs' locks held by other hosts or dead processes, saying whose (never a live process of this host).")] = False,
    partition: Annotated[str | None, typer.Option("--partition", help="slurm: partition (overrides [executor] partition).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option("--gpus-per-node", help="slurm: GPUs per run; >1 trains with DDP, one task per GPU.")] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", help="slurm: CPU cores per task.")] = None,
    mem_gb: Annotated[int | None, typer.Option("--mem-gb", help="slurm: memory per job in GB.")] = None,
    timeout_min: Annotated[int | None, typer.Option("--timeout-min", help="slurm: time limit per job in minutes (a run that needs longer is requeued and resumes).")] = None,
    until_decided: Annotated[bool, typer.Option("--until-decided", help="Add seeds in rounds until every comparison with the baseline is decided (better / worse / equivalent), with error control over the rounds; the design is fixed in <suite>/sequential.json.")] = False,
    max_seeds: Annotated[int | None, typer.Option("--max-seeds", help="--until-decided: at most this many seeds per variant (default: the suite's max_seeds).")] = None,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="--until-decided: start no round that would take the rounds past this many minutes of wall-clock time (counted over resumed sessions).")] = None,
    assignments: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE: an override like the KEY=VALUE arguments (repeatable).")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Log the suite to MLflow as an experiment, each run with params, curves, metrics and files; --mlflow URI for another store (default: sqlite:///<out>/mlruns.db).")] = False,
    mlflow_uri: Annotated[str | None, typer.Option("--mlflow-uri", help="The MLflow tracking URI (implies --mlflow).", hidden=True)] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Also log each run that ends to Weights & Biases (project: the suite's name; needs wandb).")] = False,
) -> None:
    from strabench.env import configure_process

    configure_process()  # allocator and OpenMP wait policy, before torch starts its thread pool
    from strabench.cli._common import console, print_json
    from strabench.suite.config import parse_seeds
    from rich.markup import escape

    from strabench.suite.overrides import load_suite_with_overrides
    from strabench.suite.runner import dist_rank, dry_run_rows, run_suite
    from strabench.suite.plan import parse_shard, plan_runs

    from strabench.errors import ConfigError

    if as_json and not dry_run:
        raise ConfigError("--json applies to --dry-run only (a run shows live progress and writes results.csv); add --dry-run or drop --json")
    from strabench.train.engine import check_keep_checkpoints

    check_keep_checkpoints(keep_checkpoints)
    given = [*(overrides or []), *(assignments or [])]
    config = load_suite_with_overrides(suite, given, warn=lambda line: console(stderr=True).print(f"[yellow]warning[/]: {escape(line)}", soft_wrap=True))
    seed_values = parse_seeds(seeds or [])
    from strabench.cli import _until_decided as decided

    decided.check_options(until_decided=until_decided, max_seeds=max_seeds, max_minutes=max_minutes, shard=shard,
                          executor=executor, config=config, only=_split(only))
    design = decided.adaptive_design(config, seed_values, max_seeds, _split(only)) if until_decided else None
    plan = plan_runs(
        config, out, profile=profile, data=data, seeds=seed_values or None, only=_split(only) or None,
        device=device, shard=parse_shard(shard) if shard else None,
    )
    if keep_checkpoints != "last" or allow_mixed or rerun_stale:
        from dataclasses import replace

        plan = replace(plan, keep_checkpoints=keep_checkpoints, allow_mixed=allow_mixed, rerun_stale=rerun_stale)
    from strabench.cli._tracking import TrackedView, log_runs, open_trackers

    trackers = [] if dry_run or dist_rank() != 0 else open_trackers(
        experiment=plan.suite.name, out=Path(out), mlflow=mlflow, mlflow_uri=mlflow_uri, wandb=wandb)
    if dry_run:
        rows = dry_run_rows(plan)
        if as_json:
            print_json(rows)
        else:
            _print_dry_run(console(), plan, rows)
            decided.print_plan(console(), config, plan, design, _split(only))
            _say_stale(console(), plan)
        return
    from strabench.suite.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if executor != "local" and jobs != 1:
        raise ConfigError("--jobs is for --executor local; SLURM runs the jobs side by side (limit them with [executor] array_parallelism)")
    if break_lock:
        _break_locks(console(), plan)
    if executor != "local":
        overrides = {"partition": partition, "gpus_per_node": gpus_per_node, "cpus_per_task": cpus_per_task,
                     "mem_gb": mem_gb, "timeout_min": timeout_min}
        settings = {**plan.suite.executor, **{k: v for k, v in overrides.items() if v is not None}}
        resume = _command_line(suite, out, profile, data, _split(only), shard, device, _split(seeds), keep_checkpoints, allow_mixed, given) + f" --executor {executor}"
        code = _submit(console(), plan, settings, executor, wait=wait, resubmit=resubmit, command=resume)
        log_runs(trackers, [plan.run_dir(s) for s in plan.selected], console().print, sweep=True)
        raise typer.Exit(code)
    from strabench.signals import interrupt_exit_code

    if dist_rank() == 0:
        _say_stale(console(), plan)
    if dist_rank() != 0:  # a torchrun worker: rank 0 shows and records everything
        outcome = run_suite(plan)
        raise typer.Exit(interrupt_exit_code() if outcome.interrupted else 1 if outcome.failed or outcome.locked else 0)
    out_console = console()
    if not out_console.is_terminal:  # logs (SLURM, CI): wide lines rather than wrapped tables
        from rich.console import Console

        out_console = Console(width=max(out_console.width, 140))
    if design is not None:
        def execute(round_plan: "RunPlan") -> "SuiteOutcome":
            round_view: Any = LiveView(out_console) if out_console.is_terminal and jobs == 1 else LineView(out_console)
            try:
                if jobs > 1:
                    from strabench.suite.executors import run_parallel

                    return run_parallel(round_plan, jobs, round_view)
                return run_suite(round_plan, round_view)
            finally:
                round_view.close()

        resume = _command_line(suite, out, profile, data, _split(only), shard, device, _split(seeds), keep_checkpoints, allow_mixed, given)
        resume += f" --until-decided --max-seeds {design.max_seeds}" + (f" --max-minutes {max_minutes:g}" if max_minutes else "")
        resume += f" --jobs {jobs}" if jobs > 1 else ""
        options = {"profile": profile, "data": data, "device": device, "check_models": False}  # checked above
        raise typer.Exit(decided.run_rounds(out_console, config, out, design, execute=execute, plan_options=options,
                                            max_minutes=max_minutes, resume=resume, keep_checkpoints=keep_checkpoints))
    view: Any = LiveView(out_console) if out_console.is_terminal and jobs == 1 else LineView(out_console)
    if trackers:
        view = TrackedView(view, trackers, plan)
    try:
        if jobs > 1:
            from strabench.suite.executors import run_parallel

            outcome = run_parallel(plan, jobs, view)
        else:
            outcome = run_suite(plan, view)
    finally:
        view.close()
    _print_summary(out_console, outcome)
    if outcome.interrupted:
        resume = _command_line(suite, out, profile, data, _split(only), shard, device, _split(seeds), keep_checkpoints, allow_mixed, given)
        code = interrupt_exit_code()
        how = "interrupted" if code == 130 else f"stopped by signal {code - 128}"
        out_console.print(f"[yellow]{how}[/] (exit {code}): finished runs are kept and the run in flight resumes from its checkpoint; resume with:\n  {resume}")
        raise typer.Exit(code)
    if outcome.locked:
        out_console.print(f"[yellow]{len(outcome.locked)} run(s) skipped[/]: another process holds {', '.join(outcome.locked)}")
    if outcome.failed:
        out_console.print(f"[red]{len(outcome.failed)} run(s) failed[/]: {', '.join(outcome.failed)} (reasons in their result.json)")
    if outcome.failed or outcome.locked:
        raise typer.Exit(1)


def _break_locks(out: "Console", plan: "RunPlan") -> None:
    """--break-lock: the suite's lock (or this shard's) and each selected run's locks."""
    from strabench.locks import break_lock
    from strabench.suite.status import run_lock_dir

    suite_lock = plan.out_dir if plan.shard is None else plan.out_dir / ".locks" / f"shard-{plan.shard[0]}-of-{plan.shard[1]}"
    dirs = [suite_lock]
    for spec in plan.selected:
        dirs += [run_lock_dir(plan.out_dir, spec.run_id), plan.run_dir(spec)]
    broken = [what for what in (break_lock(d) for d in dirs) if what]
    for what in broken:
        out.print(f"[yellow]broke lock[/] of {what}")
    if not broken:
        out.print("--break-lock: no locks to break")


def _submit(out: "Console", plan: "RunPlan", settings: dict, executor: str, *, wait: bool, resubmit: bool, command: str) -> int:
    """--executor slurm / submitit-local: submit, then follow (--wait) or say how to. Exit code."""
    from strabench.cli.status import StatusView, counts_line
    from strabench.suite.executors import follow, refresh_results, submit_jobs

    cluster = "slurm" if executor == "slurm" else "local"
    submitted, left_out = submit_jobs(plan, settings, cluster=cluster, resubmit=resubmit)
    for run_id, why in left_out.items():
        out.print(f"{run_id}: not submitted, {why}")
    if submitted:
        ids = ", ".join(str(job.job_id) for _, job in submitted)
        from strabench.suite.jobfiles import suite_jobs_dir

        logs = suite_jobs_dir(plan.out_dir, plan.suite.name)
        out.print(f"submitted {len(submitted)} run(s) of suite {plan.suite.name} ({executor}): job(s) {ids}; logs in {logs}")
    else:
        out.print("nothing to submit")
    if not wait:
        out.print(f"follow with:  strabench status {plan.out_dir}   (or {command} --wait)")
        out.print("rerun the same command to submit what is pending again; results.csv is rebuilt as jobs finish")
        return 0
    from rich.console import Console

    wide = out if out.is_terminal else Console(width=max(out.width, 140))
    view = StatusView(wide, f"suite {plan.suite.name} ({executor})")
    try:
        rows = follow(plan, [s.run_id for s in plan.selected], view, jobs=[job for _, job in submitted])
    finally:
        view.close()
    refresh_results(plan)
    from strabench.errors import LockError
    from strabench.locks import acquire_lock
    from strabench.suite.jobfiles import sweep_job_files

    try:
        with acquire_lock(plan.out_dir):  # every job is done: job files of a finished suite can go
            sweep_job_files(plan)
    except LockError:  # a local run holds the suite: it sweeps them when it is done
        pass
    out.print(f"{counts_line(rows)} -> {plan.out_dir / 'results.csv'}")
    for row in rows:
        if row["state"] == "failed":
            out.print(f"[red]failed[/] {row['run_id']}: {row.get('reason')}")
    return 0 if all(r["state"] == "finished" for r in rows) else 1


def _say_stale(out: "Console", plan: "RunPlan") -> None:
    """One line naming the finished runs other code made (``runner.stale_runs``): kept, or
    being retrained with --rerun-stale."""
    from rich.markup import escape

    from strabench.provenance import code_identity, describe_code
    from strabench.suite.runner import stale_runs

    stale = stale_runs(plan)
    if not stale:
        return
    names = ", ".join(s.run_id for s in stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
    what = "retraining them (--rerun-stale)" if plan.rerun_stale else "kept; --rerun-stale retrains them"
    here = describe_code(code_identity(str(stale[0].config.device)))
    out.print(escape(f"{len(stale)} finished run(s) were made by other code than this ({here}): {names}; {what}"),
              highlight=False, soft_wrap=True)


def _command_line(suite: str, out: str, profile: str | None, data: str | None, only: list[str], shard: str | None, device: str | None, seeds: list[str], keep_checkpoints: str = "last", allow_mixed: bool = False, overrides: list[str] | None = None) -> str:
    args = ["strabench", "run", suite, *(overrides or []), "--out", out]
    if allow_mixed:
        args.append("--allow-mixed")
    keep = keep_checkpoints if keep_checkpoints != "last" else None
    for flag, value in (("--profile", profile), ("--data", data), ("--shard", shard), ("--device", device), ("--keep-checkpoints", keep)):
        if value:
            args += [flag, value]
    if only:
        args += ["--only", ",".join(only)]
    if seeds:
        args += ["--seeds", ",".join(seeds)]
    return shlex.join(args)


def _print_dry_run(out: "Console", plan: "RunPlan", rows: list[dict]) -> None:
    from rich.table import Table

    shard = f", shard {plan.shard[0]}/{plan.shard[1]}" if plan.shard else ""
    table = Table(title=f"suite {plan.suite.name}: {len(rows)} of {len(plan.runs)} run(s){shard} -> {plan.out_dir}")
    for column in ("run", "model", "seed", "status"):
        table.add_column(column)
    colour = {"done": "green", "failed": "red", "partial": "yellow", "pending": "white"}
    for row in rows:
        table.add_row(row["run_id"], row["model"], str(row["seed"]), f"[{colour[row['status']]}]{row['status']}[/]")
    out.print(table)
    counts = {s: sum(r["status"] == s for r in rows) for s in colour}
    out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs")


def _print_summary(out: "Console", outcome: "SuiteOutcome") -> None:
    from rich.markup import escape
    from rich.text import Text

    from strabench.report.terminal import drop_empty_columns, print_table
    from strabench.suite.runner import metric_columns

    colour = {"finished": "green", "failed": "red", "partial": "yellow"}
    selected = {s.run_id for s in outcome.plan.selected}
    rows = [r for r in outcome.rows if r["run_id"] in selected]
    metrics = metric_columns(rows)[:3]
    headers = ["variant", "seed", "hash", "status", *metrics, "params M", "GMACs", "latency ms", "train s"]
    cells = []
    for row in rows:
        if row["status"] == "finished":
            scores = [_num(row["metrics"].get(m), 2) for m in metrics]
        else:
            scores = [row["status"]] * len(metrics)
        status = Text("skipped" if row["run_id"] in outcome.skipped else row["status"], style=colour.get(row["status"], ""))
        cells.append([
            row["variant"], str(row["seed"]), row["hash"], status, *scores,
            _num(row["params"], 2, 1e6), _num(row.get("macs_paper"), 3, 1e9), _num(row["latency_ms"], 1), _num(row["train_time_s"], 0),
        ])
    headers, cells, dropped = drop_empty_columns(headers, cells)
    title = f"suite {outcome.plan.suite.name} ({outcome.elapsed_s:.0f} s) -> {outcome.plan.out_dir / 'results.csv'}"
    print_table(out, headers, cells, title=title, right=lambda index: headers[index] not in ("variant", "hash", "status"))
    notes = ["GMACs: the paper's convention"] if "GMACs" in headers else []
    notes += [f"left out (— in every row): {', '.join(dropped)}"] if dropped else []
    if notes:
        out.print("; ".join(notes), highlight=False)
    for row in rows:
        if row["status"] == "failed" and row.get("error"):
            out.print(f"[red]failed[/] {_plain_text(row['run_id'])}: {_plain_text(row['error'])}")
    for row in rows:
        stalled = [m for m in metrics if row["status"] == "finished" and row["metrics"].get(m) is not None
                   and row.get("metrics_untrained", {}).get(m) is not None and row["metrics"][m] <= row["metrics_untrained"][m]]
        if stalled:
            out.print(f"[yellow]WARNING[/] {row['run_id']} did not learn: {', '.join(stalled)} at or below the untrained network's")


def _plain_text(text: Any) -> str:
    """A reason or phase for rich: read from files or raised by user code, so never markup."""
    from rich.markup import escape

    return escape(str(text))


def _numbers(record: dict, keys: tuple[str, ...] | None) -> str:
    """'loss 1.234, lr 0.001' for the numeric entries of a record (all of them if keys is None)."""
    items = record.items() if keys is None else ((k, record.get(k)) for k in keys)
    return ", ".join(f"{k} {v:.4g}" for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool))


def _num(value: Any, digits: int, scale: float = 1.0) -> str:
    return "—" if value is None or value == "" else f"{float(value) / scale:.{digits}f}"


class LineView(SuiteListener):
    """Plain progress lines (logs, CI, SLURM): one per phase, epoch and finished run."""

    def __init__(self, out: "Console") -> None:
        self.out = out
        self.index = self.total = 0
        self.run_id = ""
        self.started = time.monotonic()
        self._runs: dict[str, tuple[int, float]] = {}  # run id -> (index, start): --jobs runs several at once

    def close(self) -> None:
        pass

    def on_suite_start(self, plan: "RunPlan", todo: list) -> None:
        done = len(plan.selected) - len(todo)
        self.out.print(f"suite {plan.suite.name}: {len(todo)} run(s) to do, {done} already finished -> {plan.out_dir}")

    def on_run_start(self, index: int, total: int, spec: "RunSpec", status: str) -> None:
        self.index, self.total, self.run_id = index, total, spec.run_id
        self.started = time.monotonic()
        self._runs[spec.run_id] = (index, self.started)
        resumed = " (resuming)" if status == "partial" else " (retrying a failed run)" if status == "failed" else ""
        self.out.print(f"[{index}/{total}] {spec.run_id}{resumed}")

    def on_phase(self, spec: "RunSpec", phase: str) -> None:
        self.out.print(f"[{self.index}/{self.total}] {spec.run_id}: {_plain_text(phase)}")

    def on_suite_phase(self, text: str) -> None:
        self.out.print(text)

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        shown = _numbers(record, ("loss", "lr", "time_s", "images_per_s"))
        evaluated = _numbers(record.get("eval") or {}, None)
        self.out.print(f"[{self.index}/{self.total}] {self.run_id}: epoch {epoch}: {shown}" + (f"; eval {evaluated}" if evaluated else ""))

    def on_eval(self, name: str, metrics: dict) -> None:
        if name == "final":
            self.out.print(f"[{self.index}/{self.total}] {self.run_id}: final: {_numbers(metrics, None)}")

    def on_run_end(self, spec: "RunSpec", status: str, row: dict) -> None:
        colour = {"finished": "green", "locked": "yellow"}.get(status, "red")
        reason = f": {_plain_text(row.get('error'))}" if status == "failed" and row.get("error") else ""
        index, started = self._runs.pop(spec.run_id, (self.index, self.started))
        self.out.print(f"[{index}/{self.total}] {spec.run_id} [{colour}]{status}[/] in {time.monotonic() - started:.0f} s{reason}")


class LiveView(LineView):
    """A rich live view: suite progress with ETA, current run, epoch, step and loss."""

    def __init__(self, out: "Console") -> None:
        super().__init__(out)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=out, refresh_per_second=4,
        )
        self.suite_task: Any = None
        self.run_task: Any = None
        self.done = 0
        self.epoch = (0, 0)
        self.progress.start()

    def close(self) -> None:
        self.progress.stop()

    def on_suite_start(self, plan: "RunPlan", todo: list) -> None:
        super().on_suite_start(plan, todo)
        self.suite_task = self.progress.add_task(f"suite {plan.suite.name}", total=max(len(todo), 1))

    def on_run_start(self, index: int, total: int, spec: "RunSpec", status: str) -> None:
        super().on_run_start(index, total, spec, status)
        if self.run_task is not None:
            self.progress.remove_task(self.run_task)
        self.run_task = self.progress.add_task(f"[{index}/{total}] {spec.run_id}", total=None)

    def on_phase(self, spec: "RunSpec", phase: str) -> None:
        self.progress.update(self.run_task, description=f"[{self.index}/{self.total}] {spec.run_id}: {_plain_text(phase)}")

    def on_suite_phase(self, text: str) -> None:
        self.progress.console.print(text)

    def on_epoch_start(self, epoch: int, total: int) -> None:
        self.epoch = (epoch, total)

    def on_step(self, step: int, total_steps: int, loss: float) -> None:
        epoch, epochs = self.epoch  # 1-based (strabench.train.progress.ProgressHook)
        total = max(epochs, 1) * max(total_steps, 1)
        completed = min(max(epoch - 1, 0) * total_steps + step, total)
        self.progress.update(
            self.run_task, total=total, completed=completed,
            description=f"[{self.index}/{self.total}] {self.run_id}: epoch {epoch}/{epochs} step {step}/{total_steps} loss {loss:.4f}",
        )
        if self.suite_task is not None:
            self.progress.update(self.suite_task, completed=self.done + completed / total)

    def on_run_end(self, spec: "RunSpec", status: str, row: dict) -> None:
        super().on_run_end(spec, status, row)
        self.done += 1
        if self.suite_task is not None:
            self.progress.update(self.suite_task, completed=self.done)


def register(app: typer.Typer) -> None:
    app.command("run", help=__doc__)(run_command)

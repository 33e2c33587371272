"""One markdown report of strabench on one GPU (or a CPU dry run of it): `benchmarks/gpu.sh` runs this.

Steps, each a child process with its own time limit, so a hung or crashed step is reported and
the report is still written:

1. ``strabench bench`` of the ten Table 1/4 ReID ResNet-50 variants against resnet50, infer and
   train step, each in fp32 and in ``--amp bf16 --channels-last`` (ratios to resnet50 measured
   in the same run; peak memory per row);
2. ``benchmarks/local_attention.py``: the LocalAttention block against the 3x3 conv it replaces,
   fp32 and bf16 autocast + channels_last;
3. ``strabench train resnet50_stra`` with the quick profile and ``--amp bf16``, a couple of epochs
   on synthetic data: wall time, img/s per epoch and peak memory of the training process.

Writes ``<out>/<device name slug>.md`` (``nvidia-h200.md``) and ``<out>/<slug>.json``, the raw
step outputs the markdown was made from. Sizes come from the device profile (``cuda``: batch
64, 3 rounds, 0.5 s per measurement, about 6 minutes on an H200; ``cpu``: batch 2, 1 round, a
few minutes on 2 cores) or ``--smoke`` (two models, tiny inputs: a check that every step runs).

    python benchmarks/gpu_report.py [--device cuda|cpu] [--smoke] [--out DIR] [--overwrite] [--budget-s S]

Exit codes: 0 all steps ran, 1 a step failed or timed out (the report says which), 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_models import BASELINE, MODELS

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TRAIN_CHILD = "_train-with-peak-memory"  # argv[1] of the child that trains and reads peak memory


@dataclass(frozen=True)
class Profile:
    """How big every step is on one kind of machine (the budget keeps the whole run bounded)."""

    name: str
    models: tuple[str, ...]
    batch: int
    rounds: int
    min_run_time: float
    input: str | None  # HEIGHTxWIDTH for bench; None = each model's (256x128)
    la: tuple[str, ...]  # local_attention.py sizes
    train: tuple[str, ...]  # extra `strabench train` options
    bench_timeout_s: float
    la_timeout_s: float
    train_timeout_s: float
    budget_s: float  # the whole run; a step gets at most what is left
    threads: int | None = None  # CPU threads of every step (None: every core); the smoke run uses 1


TINY_REID = (
    "data_sizes={num_train_ids=2, train_images_per_id=4, num_test_ids=4, query_cams_per_id=1, "
    "gallery_images_per_id=2, num_distractors=2, num_junk=0, height=32, width=16}"
)
PROFILES = {
    "cuda": Profile(
        "cuda", MODELS, batch=64, rounds=3, min_run_time=0.5, input=None, la=("--batch", "32", "--min-run-time", "0.5"),
        train=("--epochs", "2"), bench_timeout_s=150, la_timeout_s=60, train_timeout_s=120, budget_s=470,
    ),
    "cpu": Profile(
        "cpu", MODELS, batch=2, rounds=1, min_run_time=0.2, input=None, la=("--batch", "4", "--min-run-time", "0.2"),
        train=("--epochs", "1", "--set", "data_sizes={num_train_ids=50, num_test_ids=20, num_distractors=20}"),
        bench_timeout_s=900, la_timeout_s=300, train_timeout_s=600, budget_s=3600,
    ),
    "smoke": Profile(
        # 32x16: layer4's maps are 1x1, the cheapest input every step accepts (bf16 train steps on a
        # CPU without bf16 units take a second each at 64x32)
        "smoke", (BASELINE, "resnet50_stra"), batch=2, rounds=1, min_run_time=0.01, input="32x16",
        la=("--batch", "1", "--channels", "16", "--groups", "4", "--height", "4", "--width", "4", "--min-run-time", "0.01"),
        train=("--epochs", "1", "--input", "32x16", "--batch", "8", "--workers", "0", "--set", TINY_REID,  # 8 images: one step
               "--set", "warmup_epochs=0.0"),
        bench_timeout_s=120, la_timeout_s=60, train_timeout_s=120, budget_s=600,
        threads=1,  # a check that every step runs, not a timing: one core, whatever else the machine runs
    ),
}
PRECISIONS = {"fp32": (), "bf16+channels_last": ("--amp", "bf16", "--channels-last")}


@dataclass(frozen=True)
class Step:
    """One child process: what it runs (``argv``), how the report quotes it (``shown``)."""

    key: str
    title: str
    kind: str  # bench | local_attention | train
    argv: tuple[str, ...]
    shown: str
    timeout_s: float


def slug(name: str) -> str:
    """``NVIDIA H200`` -> ``nvidia-h200``: a file name that says which machine it is about."""
    text = re.sub(r"\((r|tm)\)", "", name.lower())
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text or "unknown-device"


def plan(device: str, profile: Profile, run_dir: Path) -> list[Step]:
    """Every step of the report, in the order it runs."""
    py = sys.executable
    steps = []
    size = ("--input", profile.input) if profile.input else ()
    candidates = [m for m in profile.models if m != BASELINE]
    threads = str(profile.threads or os.cpu_count() or 1)
    for mode in ("infer", "train"):
        for precision, flags in PRECISIONS.items():
            args = ("bench", *candidates, "--baseline", BASELINE, "--device", device, "--mode", mode,
                    "--batch", str(profile.batch), *size, "--rounds", str(profile.rounds),
                    "--min-run-time", str(profile.min_run_time), "--threads", threads, *flags, "--json")
            steps.append(Step(f"bench-{mode}-{precision}", f"bench {mode}, {precision}", "bench",
                              (py, "-m", "strabench", *args), shlex.join(("strabench", *args)), profile.bench_timeout_s))
    for precision, flags in PRECISIONS.items():
        args = ("--device", device, "--threads", threads, *profile.la, *flags)
        steps.append(Step(f"local-attention-{precision}", f"LocalAttention vs 3x3 conv, {precision}", "local_attention",
                          (py, str(HERE / "local_attention.py"), *args),
                          shlex.join(("python", "benchmarks/local_attention.py", *args)), profile.la_timeout_s))
    args = ("train", "resnet50_stra", "--profile", "quick", "--data", "synthetic_reid", "--device", device,
            "--amp", "bf16", "--threads", threads, *profile.train, "--keep-checkpoints", "none", "--no-resume", "--json")
    steps.append(Step("train-quick-bf16", "train resnet50_stra, quick profile, bf16", "train",
                      (py, str(Path(__file__).resolve()), TRAIN_CHILD, str(run_dir / "peak.json"), "--", *args,
                       "--out", str(run_dir / "run")),
                      shlex.join(("strabench", *args, "--out", "RUN_DIR")), profile.train_timeout_s))
    return steps


# --- running -------------------------------------------------------------------------------------


def run_step(step: Step, timeout_s: float, log: Any = sys.stderr) -> dict[str, Any]:
    """Run one step; its stderr is relayed (indented) as it comes. Never raises for the child's failures."""
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=20)
    record: dict[str, Any] = {"key": step.key, "title": step.title, "kind": step.kind, "command": step.shown,
                              "timeout_s": round(timeout_s, 1)}
    try:
        child = subprocess.Popen(step.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # own process group: a timeout ends its workers too
    except OSError as exc:
        return {**record, "status": "failed", "elapsed_s": 0.0, "error": f"cannot start: {exc}"}

    chunks: list[str] = []

    def collect() -> None:
        assert child.stdout is not None
        chunks.append(child.stdout.read())

    def relay() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            tail.append(line.rstrip("\n"))
            print(f"    {line.rstrip()}", file=log, flush=True)

    readers = [threading.Thread(target=collect, daemon=True), threading.Thread(target=relay, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        child.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except BaseException:  # Ctrl-C: the child has its own session, so it would outlive us
        os.killpg(child.pid, signal.SIGKILL)
        raise
    for reader in readers:
        reader.join(timeout=5)
    stdout = "".join(chunks)
    elapsed = time.perf_counter() - started
    record.update(elapsed_s=round(elapsed, 1), returncode=child.returncode)
    if timed_out:
        return {**record, "status": "timed out", "error": f"stopped after {timeout_s:.0f} s (step limit)", "stderr_tail": list(tail)}
    if child.returncode != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no message")
        return {**record, "status": "failed", "error": f"exit {child.returncode}: {last.strip()}", "stderr_tail": list(tail)}
    try:
        record["result"] = json.loads(stdout)
    except json.JSONDecodeError as exc:
        return {**record, "status": "failed", "error": f"output is not JSON ({exc})", "stdout_head": stdout[:500]}
    return {**record, "status": "ok"}


def _train_details(record: dict[str, Any], run_dir: Path) -> None:
    """What the training run left in its (temporary) directory: per-epoch rates and peak memory."""
    if isinstance(record.get("result"), dict) and "out_dir" in record["result"]:
        record["result"]["out_dir"] = "RUN_DIR (temporary, deleted)"  # no machine path in a committed report
    metrics = run_dir / "run" / "metrics.jsonl"
    if metrics.is_file():
        record["epochs"] = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    peak = run_dir / "peak.json"
    if peak.is_file():
        record["peak_memory"] = json.loads(peak.read_text())


def train_with_peak_memory(peak_path: str, cli_args: list[str]) -> int:
    """Child process: run ``strabench <cli_args>`` in this process, then record its peak memory.

    In-process because CUDA's ``max_memory_allocated`` is per process; on CPU the number is the
    process's peak RSS (``ru_maxrss``), torch's own footprint included.
    """
    import resource

    from strabench.cli import main as strabench_main

    code: int | str | None = 0
    try:
        strabench_main(cli_args)
    except SystemExit as exc:
        code = exc.code
    import torch

    peak: dict[str, Any] = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        peak["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    Path(peak_path).write_text(json.dumps(peak))
    return code if isinstance(code, int) else (0 if code is None else 1)


# --- environment ---------------------------------------------------------------------------------


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment(device: str) -> dict[str, Any]:
    """The machine and software the report comes from (read in this process, before any step)."""
    import torch

    from strabench.env import describe_environment

    info = describe_environment()
    env: dict[str, Any] = {
        key: info[key] for key in ("strabench", "git_commit", "git_dirty", "python", "platform", "cpu", "cpu_count", "torch")
    }
    env["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    env["loadavg_1m"] = round(os.getloadavg()[0], 2)
    env["niceness"] = os.nice(0)
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_name=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
            gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
            driver=_nvidia_driver(),
        )
    else:
        env.update(device_name=info["cpu"], cuda=None)
    return env


# --- main ----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fail(message: str) -> int:
    print(f"gpu_report: {message}", file=sys.stderr)
    return 2


def _run_steps(planned: list[Step], steps: list[dict[str, Any]], budget: float, started: float, tmp: Path) -> None:
    """Run ``planned`` in order into ``steps``, each within what is left of ``budget``; progress on stderr."""
    for i, step in enumerate(planned, 1):
        left = budget - (time.perf_counter() - started)
        print(f"[{i}/{len(planned)}] {step.title}: {step.shown}", file=sys.stderr, flush=True)
        if left < 5:
            record = {"key": step.key, "title": step.title, "kind": step.kind, "command": step.shown,
                      "status": "skipped", "elapsed_s": 0.0, "error": f"budget of {budget:.0f} s spent"}
        else:
            record = run_step(step, min(step.timeout_s, left))
            if step.kind == "train":
                _train_details(record, tmp)
        steps.append(record)
        total = time.perf_counter() - started
        tail = f" ({record['error']})" if record["status"] != "ok" else ""
        print(f"[{i}/{len(planned)}] {step.title}: {record['status']} in {record['elapsed_s']:.1f} s "
              f"(total {total:.1f} s){tail}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [TRAIN_CHILD]:
        return train_with_peak_memory(argv[1], argv[3:])
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--smoke", action="store_true", help="two models, tiny sizes: checks that every step runs")
    p.add_argument("--out", type=Path, help="folder of the report (default: results/bench on cuda, "
                                            "results/bench/gpu-sh-cpu-dry-run on cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report of the same device")
    p.add_argument("--budget-s", type=float, help="wall-time budget of the whole run (default: the profile's)")
    a = p.parse_args(argv)
    profile = PROFILES["smoke" if a.smoke else a.device]
    budget = a.budget_s if a.budget_s is not None else profile.budget_s
    if not budget > 0:
        return _fail(f"--budget-s must be > 0, got {a.budget_s}")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        return _fail("--device cuda requested but no CUDA GPU is available (torch.cuda.is_available() is False); "
                     "use --device cpu for a dry run")
    out = a.out if a.out is not None else REPO / ("results/bench" if a.device == "cuda" else "results/bench/gpu-sh-cpu-dry-run")
    env = environment(a.device)
    name = slug(env["device_name"])
    md_path, json_path = out / f"{name}.md", out / f"{name}.json"
    existing = [str(q) for q in (md_path, json_path) if q.exists()]
    if existing and not a.overwrite:
        return _fail(f"{', '.join(existing)} already exist(s): pass --overwrite to replace, or choose --out")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} is not a directory")
    invocation = shlex.join(["benchmarks/gpu.sh", *argv])
    started, start_utc = time.perf_counter(), _now()
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strabench-gpu-report-") as tmp:
        planned = plan(a.device, profile, Path(tmp))
        try:
            _run_steps(planned, steps, budget, started, Path(tmp))
        except KeyboardInterrupt:
            print(f"gpu_report: interrupted after {len(steps)} of {len(planned)} steps; no report written", file=sys.stderr)
            return 130
    total = time.perf_counter() - started
    report = {
        "device": a.device, "profile": asdict(profile), "budget_s": budget, "invocation": invocation,
        "started_utc": start_utc, "finished_utc": _now(), "total_s": round(total, 1), "environment": env, "steps": steps,
    }
    from gpu_report_render import render

    from strabench.io import atomic_write_json, atomic_write_text, ensure_directory

    ensure_directory(out)
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, render(report, json_path.name))
    failed = [s["key"] for s in steps if s["status"] != "ok"]
    print(f"total {total:.1f} s; report {md_path}, raw {json_path}"
          + (f"; NOT OK: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

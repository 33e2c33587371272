"""Shared pieces of the reliability tests: a tiny real suite, CLI drivers, file-tree checks.

The suite is the smallest real thing that exercises every moving part: two MobileNetV2
variants (baseline and StRA, ~3M parameters, so a checkpoint is ~35 MB and a save takes well
under a second) trained for 2 epochs of 2 steps on a 16-image synthetic ReID set at 32x16,
on the CPU, one worker, seed 0. An uninterrupted run of it takes ~10-20 s on 2 cores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TINY_SIZES = (
    "{ num_train_ids = 4, train_images_per_id = 4, num_test_ids = 4, query_cams_per_id = 1, "
    "gallery_images_per_id = 2, num_distractors = 2, num_junk = 0, height = 32, width = 16 }"
)
TINY_INPUT = "32x16"


def tiny_train_args(epochs: int = 2) -> list[str]:
    """`strabench train MODEL` options for the tiny ReID set (same sizes as the tiny suite)."""
    return [
        "--epochs", str(epochs), "--batch", "8", "--input", TINY_INPUT, "--device", "cpu", "--workers", "0",
        "--set", f"data_sizes={TINY_SIZES}",
    ]


TINY_TRAIN_ARGS = tiny_train_args()

_SUITE_HEAD = """\
name = "{name}"
description = "reliability tests: tiny real suite"
data = "synthetic_reid"
profile = "quick"
seeds = {seeds}

[train]
epochs = {epochs}
batch_size = 8
input_size = [32, 16]
device = "cpu"
num_workers = 0
data_sizes = {sizes}

[measure]
params = true
macs = ["paper"]
input = "{input}"
latency = false
accuracy = true
"""

DEFAULT_VARIANTS = (
    ("mnv2", "mobilenetv2_100", ""),
    ("mnv2_stra", "mobilenetv2_100_stra", ""),
)

# results.csv columns that are wall-clock measurements, not results: never compared.
TIMING_COLUMNS = frozenset({"train_time_s", "latency_ms", "images_per_s"})


def suite_text(
    *,
    name: str = "tiny",
    variants: tuple[tuple[str, str, str], ...] = DEFAULT_VARIANTS,
    seeds: str = "[0]",
    epochs: int = 2,
) -> str:
    """A suite file; each variant is (name, model, extra TOML lines for its table)."""
    text = _SUITE_HEAD.format(name=name, seeds=seeds, epochs=epochs, sizes=TINY_SIZES, input=TINY_INPUT)
    for vname, model, extra in variants:
        text += f'\n[[variants]]\nname = "{vname}"\nmodel = "{model}"\n' + (extra + "\n" if extra else "")
    return text


def write_suite(directory: Path, filename: str = "tiny.toml", **kwargs: Any) -> Path:
    path = Path(directory) / filename
    path.write_text(suite_text(**kwargs), encoding="utf-8")
    return path


# --- running the CLI ------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a `strabench` subprocess: one thread (the other xdist worker needs the
    second core, and a fixed thread count keeps CPU results bit-identical between processes)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def strabench_argv(*args: Any) -> list[str]:
    return [sys.executable, "-m", "strabench", *(str(a) for a in args)]


def run_strabench(*args: Any, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run `strabench ARGS` to completion in a subprocess."""
    return subprocess.run(
        strabench_argv(*args), cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout,
        start_new_session=True,
    )


def _default_sigint() -> None:
    """Give the child a terminal's Ctrl-C: SIGINT at its default, whatever this process inherited.

    An ignored SIGINT survives exec, and Python then installs no KeyboardInterrupt handler (the
    Unix convention for background jobs, which strabench respects). Something in a long pytest
    session (an xdist worker after hundreds of tests) can leave SIGINT ignored, which made the
    Ctrl-C tests fail only in the full suite.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A `strabench` subprocess in its own process group whose stdout is read line by line."""

    def __init__(self, *args: Any, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            strabench_argv(*args), cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Block until a line containing ``text`` is printed; False if the process ended or timed out."""
        deadline = time.monotonic() + timeout
        if any(text in line for line in self.lines):
            return True
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            if text in line:
                return True
        return False

    def kill(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op if it already exited)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    @property
    def output(self) -> str:
        return "".join(self.lines)


# --- file-tree checks -----------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (directories as 'dir')."""
    digest: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            digest[rel] = "dir"
        else:
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def temp_files(root: Path) -> list[str]:
    """Leftovers of interrupted writes: any file whose name contains '.tmp' (strabench.io's
    ``.<name>.<hex>.tmp``, the dataset cache's ``.tmp-*``)."""
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if ".tmp" in p.name)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows


def check_consistent(suite_dir: Path, *, num_runs: int) -> None:
    """What a reader may rely on at ANY moment: every JSON file parses, every metrics.jsonl line
    parses, results.csv parses and has one row per run with a known status."""
    for path in suite_dir.rglob("*.json"):
        if ".tmp" in path.name:
            continue
        json.loads(path.read_text(encoding="utf-8"))  # raises on a torn file
    for path in suite_dir.rglob("metrics.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                json.loads(line)
    csv_path = suite_dir / "results.csv"
    if csv_path.exists():
        rows = read_csv(csv_path)
        assert len(rows) == num_runs, f"results.csv has {len(rows)} rows, expected {num_runs}"
        assert {r["status"] for r in rows} <= {"finished", "failed", "pending"}, rows


def comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """results.csv rows minus the wall-clock columns, for exact comparison across runs."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


# Lines a command may print on stderr before it detects the problem: `strabench train`
# announces the run ("training MODEL (task, data, profile) -> DIR") before building data.
ANNOUNCEMENTS = ("training ",)


def assert_one_line_error(stderr: str, *expected: str, strict: bool = False) -> str:
    """The CLI's contract for bad input: one stderr line "error: ..." naming the problem, last,
    and no traceback. ``strict``: nothing else on stderr at all; otherwise only the command's
    start-up announcement (``ANNOUNCEMENTS``) may precede the error line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines, "nothing on stderr"
    line = lines[-1]
    assert line.startswith("error:"), f"last stderr line is not the error:\n{stderr}"
    others = lines[:-1]
    if strict:
        assert not others, f"expected exactly one stderr line, got {len(lines)}:\n{stderr}"
    else:
        assert all(o.startswith(ANNOUNCEMENTS) for o in others), f"expected one error line, got:\n{stderr}"
    for text in expected:
        assert text in line, f"{text!r} not in error line {line!r}"
    return line


def assert_error_reported(stderr: str, *expected: str) -> str:
    """A failure after work started (progress lines may precede it): exactly one "error:" line,
    the last one, naming the problem; no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one final error line:\n{stderr}"
    for text in expected:
        assert text in errors[0], f"{text!r} not in error line {errors[0]!r}"
    return errors[0]


def invoke(argv: list[Any]):
    """`strabench ARGV` in-process; returns typer's Result (stdout and stderr apart)."""
    from typer.testing import CliRunner

    from strabench.cli import app

    return CliRunner().invoke(app, [str(a) for a in argv])


def no_exception(result: Any) -> None:
    """CliRunner keeps an uncaught exception in ``result.exception`` (a traceback in a real process)."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise AssertionError(f"uncaught {type(exc).__name__}: {exc}") from exc

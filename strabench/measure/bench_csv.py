"""The CSV that ``strabench bench --csv`` appends its rows to: fixed columns, one locked write per call.

A file written by another strabench version (other columns) is refused, never mixed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError

__all__ = ["CSV_FIELDS", "append_csv", "check_csv"]


CSV_FIELDS = (
    "timestamp", "model", "mode", "batch", "input", "channels", "device", "threads", "median_ms", "iqr_ms",
    "images_per_s", "ratio_to_baseline", "ratio_rounds", "baseline", "peak_mem_mb", "weights_mb", "amp",
    "channels_last", "runtime", "samples", "rounds", "min_run_time", "warmup_s", "compile_s", "optimizer", "aux_losses",
    "mem_method", "note", "torch_version", "cpu", "cpu_count", "gpu", "allocator", "noisy", "noise", "load_avg", "busy_cores",
    "omp_wait_policy", "kernels", "implementation", "stock_ratio_to_baseline",
)  # fmt: skip


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return "" if value is None else value


def check_csv(path: str | os.PathLike) -> None:
    """Fail before a long run, not after it, if ``path`` exists with other columns."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--csv {path} is a directory")
    if path.exists():
        with open(path, newline="") as fh:
            header = fh.readline().rstrip("\r\n")
        if header and header != ",".join(CSV_FIELDS):
            raise ConfigError(f"--csv {path}: existing header differs from this version's columns; use a new file")


def append_csv(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Append ``rows`` to a CSV for pandas: header only when the file is new, one locked write.

    A file whose header differs (another strabench version) is refused rather than mixed.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = io.StringIO()
    writer = csv.DictWriter(body, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in CSV_FIELDS})
    with open(path, "a+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            header = fh.readline().rstrip("\r\n")
            text = body.getvalue()
            if not header:
                text = ",".join(CSV_FIELDS) + "\n" + text
            elif header != ",".join(CSV_FIELDS):
                raise ConfigError(f"--csv {path}: existing header differs from this version's columns; use a new file")
            fh.seek(0, os.SEEK_END)
            fh.write(text)  # one write in append mode: concurrent appenders do not interleave
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

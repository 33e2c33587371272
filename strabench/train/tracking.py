"""Per-epoch curves in the formats the ecosystem reads: ``metrics.csv`` and TensorBoard events.

The engine calls ``EpochLog.log`` after each epoch's ``metrics.jsonl`` line (rank 0 only):

* ``metrics.csv`` -- always: one row per epoch, rewritten from ``metrics.jsonl`` (the record of
  truth) each time, so a resumed run that dropped epochs past its checkpoint has no stale rows.
  Nested entries become ``a/b`` columns (``eval/mAP``); row ``epoch 0`` holds the untrained
  network's evaluation, so every curve starts where training started.
* TensorBoard event files in the run directory (``tensorboard --logdir results/<suite>`` shows
  one run per directory): every number of the record under ``train/`` (loss, lr, time ...) or
  its own group (``eval/mAP``), step = epoch, untrained evaluation at step 0. A resumed run
  opens its writer with ``purge_step`` = its first new epoch, so TensorBoard hides the events an
  interrupted attempt wrote past the checkpoint. Without the tensorboard package: one warning
  line per process, and the CSV only.

Whatever the engine puts in a record (an evaluation on a fixed subset, with its label) is
written as it comes: strings stay in the CSV, numbers go to both.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["EpochLog", "METRICS_CSV", "csv_rows", "flatten", "scalars"]

METRICS_CSV = "metrics.csv"
_LOG = logging.getLogger("strabench.tracking")
_WARNED: set[str] = set()


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": 1, "eval": {"mAP": 2}}`` -> ``{"loss": 1, "eval/mAP": 2}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numbers as TensorBoard tags: top-level under ``train/``, nested by their path."""
    out: dict[str, float] = {}
    for name, value in flatten(record).items():
        number = _number(value)
        if number is None or name == "epoch":
            continue
        out[name if "/" in name else f"train/{name}"] = number
    return out


def csv_rows(records: list[Mapping[str, Any]], untrained: Mapping[str, Any] | None = None) -> str:
    """``metrics.csv``: epoch first, then the columns in order of first appearance."""
    rows = [flatten(r) for r in records if isinstance(r, Mapping)]
    if untrained:
        rows.insert(0, {"epoch": 0, **flatten({"eval": dict(untrained)})})
    columns: list[str] = ["epoch"]
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v if not isinstance(v, list) else " ".join(map(str, v))) for k, v in row.items()})
    return buffer.getvalue()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        _LOG.warning(message)


class EpochLog:
    """The engine's per-epoch writer of ``metrics.csv`` and TensorBoard events (one run directory)."""

    def __init__(self, out_dir: Path | str, *, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.tensorboard = tensorboard
        self._writer: Any = None

    def log(self, record: Mapping[str, Any], *, untrained: Mapping[str, Any] | None = None) -> None:
        """After ``record`` (an epoch's metrics.jsonl line) was appended; ``untrained``: the
        untrained network's metrics (step 0)."""
        from strabench.io import atomic_write_text, read_jsonl

        jsonl = self.out_dir / "metrics.jsonl"
        records = read_jsonl(jsonl).records if jsonl.is_file() else [dict(record)]
        atomic_write_text(self.out_dir / METRICS_CSV, csv_rows(records, untrained))
        epoch = record.get("epoch")
        if not self.tensorboard or not isinstance(epoch, int):
            return
        writer = self._open(first_step=0 if untrained and epoch == 1 else epoch)
        if writer is None:
            return
        if untrained and epoch == 1:
            for tag, value in scalars({"eval": dict(untrained)}).items():
                writer.add_scalar(tag, value, 0)
        for tag, value in scalars(record).items():
            writer.add_scalar(tag, value, epoch)
        writer.flush()

    def _open(self, first_step: int) -> Any:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tensorboard = False
                _warn_once("tensorboard", "tensorboard is not installed: no event files, metrics.csv only (pip install tensorboard)")
                return None
            # purge_step: events a killed attempt wrote at or past this step are hidden
            self._writer = SummaryWriter(log_dir=str(self.out_dir), purge_step=first_step)
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "EpochLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A fake training engine honouring the ``fit`` contract, and helpers to write suite files.

The runner's tests are about orchestration (hashes, skipping, resuming, failure handling,
results.csv), so they swap the engine for this fake: it writes the files the real engine writes
(config.toml, metrics.jsonl, checkpoint.pt, result.json last) in microseconds. One test in
``test_suite_e2e.py`` runs the real engine.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from strabench.errors import NumericalError
from strabench.io import append_jsonl, atomic_write_json, atomic_write_text

BASE_SUITE = """\
name = "{name}"
description = "test suite"
paper_table = "Table 1 (Market-1501)"
data = "synthetic_reid"
profile = "quick"
seeds = {seeds}

[train.quick]
epochs = {epochs}

[measure]
params = true
macs = ["paper"]
input = "64x32"
accuracy = true

[[variants]]
name = "base"
model = "resnet50"

[[variants]]
name = "stra"
model = "resnet50_stra"
"""


def write_suite(directory: Path, text: str | None = None, *, name: str = "t", seeds: str = "[0]", epochs: int = 2, filename: str = "suite.toml") -> Path:
    path = directory / filename
    body = BASE_SUITE.format(name=name, seeds=seeds, epochs=epochs) if text is None else textwrap.dedent(text)
    path.write_text(body, encoding="utf-8")
    return path


class FakeEngine:
    """Stands in for ``strabench.train.engine.fit`` (and, for speed, for measuring)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_models: set[str] = set()
        self.interrupt_runs: set[str] = set()  # run dir names: write a checkpoint, then Ctrl-C (once)
        self.on_call = None  # optional callable(run_dir) run at the start of each fit
        self.epoch_s = 0.0  # seconds each epoch takes (to interrupt a run mid-way)
        self.log_calls = False  # also append each call to <run>/fake_calls.jsonl (for worker processes)

    def metrics(self, config: Any) -> dict[str, float]:
        bonus = 5.0 if "stra" in config.model else 0.0
        return {"mAP": 50.0 + 10.0 * config.seed + bonus, "rank1": 70.0 + 10.0 * config.seed + bonus}

    def __call__(self, config: Any, out_dir: Path, *, resume: bool, progress: Any, keep_checkpoints: str = "last") -> dict[str, Any]:
        out_dir = Path(out_dir)
        checkpoint = out_dir / "checkpoint.pt"
        self.calls.append({"run": out_dir.name, "resume": resume, "had_checkpoint": checkpoint.is_file()})
        if self.on_call is not None:
            self.on_call(out_dir)
        from strabench.train.config import config_hash, to_toml

        atomic_write_text(out_dir / "config.toml", to_toml(config))
        start = 1
        if resume and checkpoint.is_file():
            start = json.loads(checkpoint.read_text())["epoch"] + 1
        if self.log_calls:
            import os
            import time

            import torch

            append_jsonl(out_dir / "fake_calls.jsonl", {
                "start_epoch": start, "pid": os.getpid(), "time": time.time(), "threads": torch.get_num_threads(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            })
        for epoch in range(start, config.epochs + 1):
            if self.epoch_s:
                import time

                time.sleep(self.epoch_s)
            progress.on_epoch_start(epoch, config.epochs)
            progress.on_step(1, 1, 2.0 / epoch)
            if config.model in self.fail_models:
                raise NumericalError(f"loss is nan at epoch {epoch} step 1 (lr {config.lr})")
            record = {"epoch": epoch, "loss": 2.0 / epoch, "lr": config.lr, "time_s": 0.01}
            if epoch == config.epochs:
                record["eval"] = self.metrics(config)
            append_jsonl(out_dir / "metrics.jsonl", record)
            atomic_write_text(checkpoint, json.dumps({"epoch": epoch}))
            progress.on_epoch_end(epoch, record)
            if out_dir.name in self.interrupt_runs:
                self.interrupt_runs.discard(out_dir.name)
                raise KeyboardInterrupt
        progress.on_eval("final", self.metrics(config))
        result = {
            "status": "finished", "model": config.model, "task": config.task, "config_hash": config_hash(config),
            "metrics": self.metrics(config), "metrics_untrained": {"mAP": 10.0 + config.seed, "rank1": 12.0},
            "metrics_ci95": {k: [v - 2.0, v + 2.0] for k, v in self.metrics(config).items()},
            "test_size": {k: 50 for k in self.metrics(config)},
            "epochs": config.epochs, "train_time_s": 1.5,
        }
        atomic_write_json(out_dir / "result.json", result)
        return result


def fake_measure(spec: Any) -> dict[str, Any]:
    """Deterministic complexity numbers (measured for real in test_measure_for_real)."""
    size = 17_600_000 if "stra" in spec.model else 24_600_000
    return {
        "input": [3, 64, 32],
        "params": size,
        "macs": {c: size * 100 for c in spec.measure.macs},
        "uncounted": {},
    }


class NoisyEngine(FakeEngine):
    """Scores that vary with the seed like real training: a seed effect shared by the variants
    (so pairing helps), per-run noise, and a fixed advantage for models named in ``bonus``."""

    def __init__(self, bonus: dict[str, float] | None = None, noise: float = 1.0) -> None:
        super().__init__()
        self.bonus = {"resnet50_stra": 3.0} if bonus is None else bonus
        self.noise = noise

    def metrics(self, config: Any) -> dict[str, float]:
        import zlib

        import numpy as np

        shared = np.random.default_rng(config.seed).normal(0.0, 2.0)
        own = np.random.default_rng([config.seed, zlib.crc32(config.model.encode())]).normal(0.0, self.noise)
        score = 40.0 + shared + own + self.bonus.get(config.model, 0.0)
        return {"mAP": score, "rank1": score + 20.0}

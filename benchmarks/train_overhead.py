"""How much does the training loop cost on top of the bare forward/backward/step? Prints JSON.

Both sides run the same model, optimiser, loss and batch size of the quick profile:

* ``engine``: ``Trainer.run_epoch(max_steps=N)``, the real loop -- DataLoader with JPEG decoding
  and augmentation, host->device copies, NaN checks, loss accounting, LR scheduler, progress hook;
* ``bare``: N steps of ``model(x)``, loss, ``zero_grad``, ``backward``, ``step`` on batches that
  were decoded and augmented beforehand (tensors already in memory).

``overhead = engine / bare - 1`` (target <= 10%). The rounds alternate engine and bare and the
median is reported, because shared machines drift; CPU time (``process_time``) is reported too
since it is less sensitive to other processes than wall time. ``data_s_per_step`` times the
DataLoader alone, to show whether data loading could be the bottleneck.

Usage: python benchmarks/train_overhead.py [--model resnet50_stra] [--steps 10] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50_stra")
    parser.add_argument("--task", default=None)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", default="auto")
    args = parser.parse_args(argv)

    import torch

    from strabench.train.config import TrainConfig, resolve
    from strabench.train.engine import Trainer
    from strabench.train.progress import PlainProgress

    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers if args.workers == "auto" else int(args.workers)
    cfg = resolve(TrainConfig(args.model, task=args.task, profile=args.profile, device=args.device, num_workers=workers))
    trainer = Trainer(cfg)
    steps = min(args.steps, trainer.steps_per_epoch)
    hook = PlainProgress(stream=open(os.devnull, "w"))  # the engine's per-step hook calls, rendered nowhere
    device = trainer.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> tuple[float, float]:
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    def load_batches() -> list:
        batches = []
        for batch in trainer.train_loader:
            batches.append(batch)
            if len(batches) == steps:
                break
        return batches

    def bare(batches: list) -> None:
        model, opt = trainer.model, trainer.optimizer
        model.train()
        for batch in batches:
            images = batch[0].to(device, non_blocking=True)
            with trainer.autocast():
                out = model(images)
                parts = trainer.strategy.loss(out, batch, trainer.aux_weights, device)
            opt.zero_grad(set_to_none=True)
            parts.total.backward()
            opt.step()

    trainer.run_epoch(1, max_steps=2, hook=hook)  # warm-up: allocator, oneDNN kernels
    epoch = 2
    engine_wall, engine_cpu, bare_wall, bare_cpu, data_wall = [], [], [], [], []
    for _ in range(args.rounds):
        w, c = timed(lambda: trainer.run_epoch(epoch, max_steps=steps, hook=hook))
        engine_wall.append(w / steps)
        engine_cpu.append(c / steps)
        holder: list = []
        w, _ = timed(lambda: holder.append(load_batches()))
        data_wall.append(w / steps)
        w, c = timed(lambda: bare(holder[0]))
        bare_wall.append(w / steps)
        bare_cpu.append(c / steps)
        epoch += 1

    med = statistics.median
    result = {
        "benchmark": "train_overhead",
        "model": cfg.model,
        "task": cfg.task,
        "profile": cfg.profile,
        "input_size": list(cfg.input_size),
        "batch_size": cfg.batch_size,
        "steps": steps,
        "rounds": args.rounds,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "num_workers": trainer.num_workers,
        "engine_s_per_step": med(engine_wall),
        "bare_s_per_step": med(bare_wall),
        "overhead_pct": 100.0 * (med(engine_wall) / med(bare_wall) - 1.0),
        "engine_cpu_s_per_step": med(engine_cpu),
        "bare_cpu_s_per_step": med(bare_cpu),
        "overhead_cpu_pct": 100.0 * (med(engine_cpu) / med(bare_cpu) - 1.0),
        "data_s_per_step": med(data_wall),
        "all_engine_s_per_step": engine_wall,
        "all_bare_s_per_step": bare_wall,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()

"""What the quick profile's synthetic test sets cost: generation and evaluation time per task; JSON.

For each task (reid, face, fer): generate the quick profile's dataset into a fresh cache (timed),
then evaluate the quick model, freshly initialised (evaluation time does not depend on the
weights), on the full test set, on the fixed subset periodic evaluation uses, and on the
quick profile's earlier, small test set (``OLD_TEST_SIZES``, generated too) so that the ratio
new / old is measured in the same process, under the same load. Each step has its wall time
(``*_s``) and this process's CPU time (``*_cpu_s``, all threads): on a shared machine the wall
time grows with the load, the CPU time much less. The machine, its load and the thread count
are printed beside the numbers.

    python benchmarks/synthetic_costs.py [--tasks reid face fer] [--threads 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

#: The quick profile's test sets before they were sized for narrow intervals.
OLD_TEST_SIZES = {
    "reid": {"num_test_ids": 50, "query_cams_per_id": 2, "gallery_images_per_id": 6, "num_distractors": 50},
    "face": {"num_test_ids": 20, "images_per_test_id": 4, "pairs_per_fold": 10},
    "fer": {"num_public_test": 210, "num_private_test": 210},
}
MODELS = {"reid": "resnet50", "face": "face_resnet50", "fer": "fer_resnet"}


def _timed(fn, out: dict, key: str):
    started, cpu = time.perf_counter(), time.process_time()
    value = fn()
    out[f"{key}_s"], out[f"{key}_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu
    return value


def measure(task: str, cache: Path) -> dict:
    import torch

    from strabench.data import build_task_data
    from strabench.data.synthetic import ensure_dataset
    from strabench.registry import create_model
    from strabench.train.config import TrainConfig, resolve
    from strabench.train.evaluation import STRATEGIES, Predictor

    cfg = resolve(TrainConfig(MODELS[task], task=task, device="cpu"))
    sizes = dict(cfg.data_sizes)
    old = {**sizes, **OLD_TEST_SIZES[task]}
    out: dict = {"task": task, "model": cfg.model, "input_size": list(cfg.input_size), "sizes": sizes}
    _timed(lambda: ensure_dataset(cfg.data, cache_dir=cache, **sizes), out, "generate")
    _timed(lambda: ensure_dataset(cfg.data, cache_dir=cache, **old), out, "generate_old")
    strategy = STRATEGIES[task]
    kwargs = {"input_size": tuple(cfg.input_size)} if strategy.sized_input else {}
    predictor = Predictor(device=torch.device("cpu"), batch_size=cfg.eval_batch_size)
    for label, data_sizes in (("", sizes), ("_old", old)):
        data = build_task_data(cfg.data, task, input_size=tuple(cfg.input_size), augment=False, cache_dir=cache, sizes=data_sizes)
        torch.manual_seed(0)
        model = create_model(cfg.model, task=task, num_classes=data.num_classes, **kwargs)
        result = _timed(lambda: strategy.evaluate(model, data, predictor), out, f"evaluate{label}")
        out[f"test_size{label}"] = result.test_size
        out[f"interval{label}"] = result.intervals
        if not label:
            subset = strategy.subset(data)
            sub = _timed(lambda: strategy.evaluate(model, subset, predictor), out, "evaluate_subset")
            out["test_size_subset"] = sub.test_size
    out["ratio_new_to_old"] = out["evaluate_cpu_s"] / out["evaluate_old_cpu_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reid", "face", "fer"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        load_before = os.getloadavg()
        rows = [measure(task, cache) for task in args.tasks]
        report = {
            "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
                        "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "torch": torch.__version__},
            "tasks": rows,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

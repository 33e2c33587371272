"""How long planning takes for a large suite: `strabench run --dry-run` of N variants.

    python benchmarks/plan_scale.py [--variants 1000] [--distinct-overrides 0]

Writes a suite of N variants (cycling over every registered ReID model, each variant with its
own learning rate, so every run is distinct) into a temp folder, then times
``plan_runs`` + ``dry_run_rows`` (what `--dry-run` does) and prints JSON. Models are built on the
meta device once per distinct (model, overrides, input): ``--distinct-overrides K`` gives K
variants their own ``overrides`` (a different mode-attention group count) to show that cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def suite_toml(variants: int, distinct_overrides: int) -> str:
    from strabench.registry import list_models, model_info

    models = [m for m in list_models() if "reid" in model_info(m).tasks]
    lines = [
        'name = "scale"', 'data = "synthetic_reid"', "seeds = [0]", "", "[train]", "epochs = 1", "input_size = [64, 32]",
        "", "[measure]", "params = true", 'macs = ["paper"]', 'input = "64x32"', "latency = false", "accuracy = true", "",
    ]
    for i in range(variants):
        model = models[i % len(models)]
        lines += ["[[variants]]", f'name = "v{i:05d}"', f'model = "{model}"', f"train = {{ lr = {1e-4 * (1 + i):.6g} }}"]
        if i < distinct_overrides and "stra" in model:
            lines.append(f"overrides = {{ mode_groups = {1 + i % 4} }}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=1000)
    parser.add_argument("--distinct-overrides", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    import torch  # noqa: F401 - the import (seconds on a busy box) is timed apart from planning
    import torchvision  # noqa: F401

    from strabench.suite.config import load_suite
    from strabench.suite.runner import dry_run_rows, plan_runs

    imported = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.toml"
        path.write_text(suite_toml(args.variants, args.distinct_overrides), encoding="utf-8")
        t0 = time.perf_counter()
        suite = load_suite(path)
        t1 = time.perf_counter()
        plan = plan_runs(suite, Path(tmp) / "results")
        t2 = time.perf_counter()
        rows = dry_run_rows(plan)
        t3 = time.perf_counter()
    print(json.dumps({
        "variants": args.variants, "runs": len(plan.runs), "listed": len(rows),
        "distinct_models": len({(r.model, json.dumps(dict(r.config.model_overrides), sort_keys=True)) for r in plan.runs}),
        "import_s": round(imported - started, 2), "load_suite_s": round(t1 - t0, 2), "plan_runs_s": round(t2 - t1, 2),
        "dry_run_rows_s": round(t3 - t2, 2), "planning_s": round(t3 - t0, 2), "total_s": round(t3 - started, 2),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": sys.version.split()[0],
    }, indent=2))


if __name__ == "__main__":
    main()

"""Time ``strabench.metrics.reid.evaluate`` at Market-1501 size and print JSON.

Market-1501's test split has 3,368 queries and 19,732 gallery images (750 identities, 6
cameras). The distances are random float32 (the dtype ``pairwise_distance`` returns), so the
numbers measure the metric's cost, not a model. Reports the best of ``--repeat`` runs, per
worker count, plus the machine it ran on, so the README can quote it honestly.

    python benchmarks/reid_metric.py [--queries 3368] [--gallery 19732] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from strabench.metrics.reid import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=19732)
    parser.add_argument("--identities", type=int, default=750)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    distmat = rng.random((args.queries, args.gallery), dtype=np.float32)
    q_pids = rng.integers(0, args.identities, args.queries)
    g_pids = rng.integers(0, args.identities, args.gallery)
    q_camids = rng.integers(0, args.cameras, args.queries)
    g_camids = rng.integers(0, args.cameras, args.gallery)

    timings: dict[str, float] = {}
    for workers in args.workers:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            cmc, mean_ap = evaluate(
                distmat, q_pids, g_pids, q_camids, g_camids, num_workers=workers
            )
            best = min(best, time.perf_counter() - start)
        timings[str(workers)] = round(best, 3)

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    print(
        json.dumps(
            {
                "benchmark": "reid_metric",
                "queries": args.queries,
                "gallery": args.gallery,
                "dtype": "float32",
                "best_seconds_by_workers": timings,
                "repeat": args.repeat,
                "rank1": float(cmc[0]),
                "mAP": mean_ap,
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "cpus_available": cpus,
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                },
            },
            indent=2,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()

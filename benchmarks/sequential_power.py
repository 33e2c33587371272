"""Simulate run-until-decided designs through the engine that decides them, and print JSON.

``tests/report/test_sequential.py`` checks the error control with 4,000 suites per case; this
script runs larger simulations over more designs, for the record: per design, the rate of
suites with any wrong verdict when nothing differs (must stay <= alpha), the rate of false
"equivalent" when a variant differs by exactly the margin, and, under a true effect, how often
and after how many seeds the effect is decided, beside a fixed design with every seed at the
full alpha. Every suite goes through ``strabench.report.sequential.decide``, the function the
reports and the rounds use.

    python benchmarks/sequential_power.py [--suites 20000] [--first 4] [--max-seeds 10 15 20]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from strabench.report.sequential import BETTER, EQUIVALENT, WORSE, decide, fixed_design, sequential_design


def suites(rng: np.random.Generator, count: int, effects: list[float], seeds: int, sd: float) -> np.ndarray:
    """Paired differences against one shared baseline (so the comparisons correlate)."""
    baseline = rng.normal(0.0, sd / math.sqrt(2), size=(count, 1, seeds))
    variants = rng.normal(0.0, sd / math.sqrt(2), size=(count, len(effects), seeds)) + np.asarray(effects)[None, :, None]
    return variants - baseline


def rate(hits: np.ndarray) -> dict[str, float]:
    p = float(np.mean(hits))
    return {"rate": round(p, 4), "mc_se": round(math.sqrt(p * (1 - p) / hits.size), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", type=int, default=20_000)
    parser.add_argument("--first", type=int, default=4)
    parser.add_argument("--max-seeds", type=int, nargs="+", default=[10, 15, 20])
    parser.add_argument("--comparisons", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--sd", type=float, default=1.0, help="per-seed SD of a paired difference")
    parser.add_argument("--effect", type=float, default=1.0, help="true difference of the first variant (in SDs x sd)")
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    out = []
    for top in args.max_seeds:
        design = sequential_design(args.first, top, args.alpha)
        for k in args.comparisons:
            entry = {"max_seeds": top, "comparisons": k, "looks": list(design.looks),
                     "alphas": [round(a, 5) for a in design.alphas]}
            null = suites(rng, args.suites, [0.0] * k, top, args.sd)
            for margin in (None, args.margin):
                verdict = decide(null, design, margin).verdict
                entry[f"null_any_better_or_worse_margin_{margin}"] = rate(np.any((verdict == BETTER) | (verdict == WORSE), axis=1))
            at_margin = suites(rng, args.suites, [args.margin] * k, top, args.sd)
            verdict = decide(at_margin, design, args.margin).verdict
            entry["false_equivalent_or_worse_at_margin"] = rate(np.any((verdict == EQUIVALENT) | (verdict == WORSE), axis=1))
            effect = suites(rng, args.suites, [args.effect] + [0.0] * (k - 1), top, args.sd)
            decisions = decide(effect, design, None)
            found = decisions.verdict[:, 0] == BETTER
            looks = np.array(design.looks)[decisions.look[:, 0][found]]
            fixed = decide(effect, fixed_design(top, args.alpha), None).verdict[:, 0] == BETTER
            entry["effect"] = {"delta": args.effect, "sd": args.sd, "better": rate(found),
                               "mean_seeds_when_decided": round(float(looks.mean()), 2) if looks.size else None,
                               "fixed_design_all_seeds_better": rate(fixed)}
            out.append(entry)
    print(json.dumps({"suites_per_case": args.suites, "alpha": args.alpha, "first_look": args.first, "designs": out}, indent=2))


if __name__ == "__main__":
    main()

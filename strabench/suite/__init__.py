"""Suites: a paper table as a TOML file (``suites/*.toml``), run as variants x seeds.

``load_suite(path)`` checks the file (``config``); ``plan_runs`` resolves every run and its
hashed directory; ``run_suite`` executes them resumably and keeps ``results.csv`` current
(``runner``). Importing this package does not import torch.
"""

from __future__ import annotations

from strabench.suite.config import LatencySpec, MeasureSpec, SuiteConfig, VariantSpec, load_suite

__all__ = [
    "LatencySpec",
    "MeasureSpec",
    "RunPlan",
    "RunSpec",
    "SuiteConfig",
    "VariantSpec",
    "load_suite",
    "plan_runs",
    "run_suite",
]


def __getattr__(name: str):
    if name in {"RunPlan", "RunSpec", "plan_runs", "run_suite"}:
        from strabench.suite import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'strabench.suite' has no attribute {name!r}")

"""Datasets for strabench: synthetic generators, real-format loaders and torch Datasets.

Data reaches the training engine through one door, :func:`build_task_data`, which takes a
spec string (``synthetic_reid``, ``market1501:/data/Market-1501``, ...) and returns a
:class:`TaskData` of torch Datasets. The synthetic generators write the *same* on-disk formats
as the real datasets (Market-1501, LFW + ``pairs.txt``, FER2013 csv), so the real loaders are
exercised by every quick run.

Importing this package is cheap; torch is imported only when Datasets are built.
"""

from __future__ import annotations

__all__ = [
    "DataSpec", "TaskData", "build_task_data", "check_data", "check_synthetic_sizes", "ensure_dataset", "parse_data_spec",
]


def __getattr__(name: str):  # lazy: keep `import strabench.data` free of torch
    if name in {"DataSpec", "TaskData", "build_task_data", "check_data", "check_synthetic_sizes", "parse_data_spec"}:
        from strabench.data import tasks

        return getattr(tasks, name)
    if name == "ensure_dataset":
        from strabench.data import synthetic

        return synthetic.ensure_dataset
    raise AttributeError(f"module 'strabench.data' has no attribute {name!r}")

"""Training and evaluation: configs and recipes, the engine, DDP support, checkpoints.

Importing this package is cheap (no torch): the public names load on first use.
``fit(cfg, out_dir)`` trains and evaluates a ``TrainConfig``; ``evaluate_checkpoint`` evaluates
saved weights; ``resolve`` / ``config_hash`` turn a config into the experiment's identity.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressHook", "TrainConfig", "config_hash", "evaluate_checkpoint", "fit", "resolve", "to_toml"]

_LAZY = {
    "TrainConfig": "strabench.train.config",
    "resolve": "strabench.train.config",
    "config_hash": "strabench.train.config",
    "to_toml": "strabench.train.config",
    "fit": "strabench.train.engine",
    "evaluate_checkpoint": "strabench.train.saved",
    "ProgressHook": "strabench.train.progress",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'strabench.train' has no attribute {name!r}")

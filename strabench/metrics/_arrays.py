"""Array conversion shared by the metric modules (private)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """Accept numpy arrays, lists and torch tensors (any device, with grad) without importing torch.

    Metrics are computed in numpy; callers hand in whatever their model produced.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch.Tensor, duck-typed to keep torch lazy
        x = x.detach().cpu().numpy()
    return np.asarray(x)

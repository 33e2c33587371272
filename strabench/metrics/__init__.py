"""Evaluation metrics: ReID (CMC / mAP), face verification (k-fold accuracy), classification.

Kept import-light on purpose: the submodules import numpy (and torch only inside the functions
that need it), so ``import strabench.metrics`` costs nothing.
"""

from __future__ import annotations

from strabench.errors import DataError

__all__ = ["MetricError"]


class MetricError(DataError):
    """Inputs a metric cannot be computed on (mismatched shapes, no valid query, NaNs).

    A ``DataError`` because the cause is always the features / labels handed in, not the code.
    """

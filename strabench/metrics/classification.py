"""Classification metrics for facial-expression recognition (FER2013, RAF-DB, ...).

FER papers report overall top-1 accuracy and, because the classes are imbalanced (FER2013's
"disgust" is ~1.5% of the data), per-class accuracy and the confusion matrix as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strabench.metrics import MetricError
from strabench.metrics._arrays import to_numpy

__all__ = ["confusion_matrix", "per_class_accuracy", "top1_accuracy", "top1_correct"]


def _predictions_and_labels(logits_or_preds: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Accept (N, C) logits/probabilities or (N,) class indices; validate against (N,) labels."""
    preds = to_numpy(logits_or_preds)
    target = to_numpy(labels)
    if preds.ndim == 2:
        preds = preds.argmax(axis=1)
    elif preds.ndim != 1:
        raise MetricError(
            f"predictions must be (N, num_classes) logits or (N,) class indices, got shape {preds.shape}"
        )
    if target.ndim != 1 or target.shape[0] != preds.shape[0]:
        raise MetricError(f"labels have shape {target.shape}, expected ({preds.shape[0]},)")
    if preds.shape[0] == 0:
        raise MetricError("no samples: accuracy of an empty set is undefined")
    for name, arr in (("predictions", preds), ("labels", target)):
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise MetricError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    return preds.astype(np.int64), target.astype(np.int64)


def top1_correct(logits_or_preds: Any, labels: Any) -> np.ndarray:
    """Per item: is the top-1 prediction the label (what accuracy averages, and a bootstrap resamples)."""
    preds, target = _predictions_and_labels(logits_or_preds, labels)
    return preds == target


def top1_accuracy(logits_or_preds: Any, labels: Any) -> float:
    """Fraction of items whose top-1 prediction is the label."""
    return float(np.mean(top1_correct(logits_or_preds, labels)))


def confusion_matrix(preds: Any, labels: Any, num_classes: int) -> np.ndarray:
    """(num_classes x num_classes) int64 counts; row = true class, column = predicted class.

    Takes class indices or logits. Indices outside ``[0, num_classes)`` are an error rather than
    being dropped, so a wrong ``num_classes`` cannot silently lose samples.
    """
    pred, target = _predictions_and_labels(preds, labels)
    if num_classes < 1:
        raise MetricError(f"num_classes must be >= 1, got {num_classes}")
    for name, arr in (("predictions", pred), ("labels", target)):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        if bad.size:
            raise MetricError(
                f"{name} contain class {int(bad[0])}, outside [0, {num_classes}) (num_classes={num_classes})"
            )
    flat = target * num_classes + pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(preds: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Recall of each true class (the diagonal over the row sums of the confusion matrix).

    A class with no samples gets NaN, not 0: "never seen" is not "always wrong". Its NaN-aware
    mean (``np.nanmean``) is the "mean class accuracy" some FER papers report.
    """
    cm = confusion_matrix(preds, labels, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)

"""Tests for strabench.metrics.classification, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from strabench.metrics import MetricError
from strabench.metrics.classification import confusion_matrix, per_class_accuracy, top1_accuracy

# 6 samples, 3 classes.
#   labels: 0 0 1 1 2 2
#   preds:  0 1 1 1 0 2      -> correct: yes no yes yes no yes = 4/6
LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDS = np.array([0, 1, 1, 1, 0, 2])


def test_top1_from_predictions_and_from_logits():
    assert top1_accuracy(PREDS, LABELS) == pytest.approx(4 / 6)
    logits = np.full((6, 3), -1.0)
    logits[np.arange(6), PREDS] = 2.0  # argmax = PREDS
    assert top1_accuracy(logits, LABELS) == pytest.approx(4 / 6)


def test_top1_accepts_torch():
    import torch

    assert top1_accuracy(torch.tensor(PREDS), torch.tensor(LABELS)) == pytest.approx(4 / 6)


def test_confusion_matrix_rows_are_true_classes():
    # true 0 -> predicted 0 once, 1 once; true 1 -> 1 twice; true 2 -> 0 once, 2 once
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    cm = confusion_matrix(PREDS, LABELS, num_classes=3)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 6
    # a 4th, never-seen class adds an empty row and column
    np.testing.assert_array_equal(confusion_matrix(PREDS, LABELS, 4)[:3, :3], expected)
    assert confusion_matrix(PREDS, LABELS, 4)[3].sum() == 0


def test_per_class_accuracy():
    # class 0: 1/2, class 1: 2/2, class 2: 1/2, class 3: no samples -> NaN
    acc = per_class_accuracy(PREDS, LABELS, num_classes=4)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 0.5])
    assert np.isnan(acc[3])
    assert np.nanmean(acc) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: top1_accuracy([0, 1], [0]), "labels have shape"),
        (lambda: top1_accuracy([], []), "no samples"),
        (lambda: top1_accuracy(np.zeros((2, 2, 2)), [0, 1]), "logits or"),
        (lambda: top1_accuracy([0.5, 1.0], [0, 1]), "integer class indices"),
        (lambda: confusion_matrix([0, 3], [0, 1], 3), "predictions contain class 3"),
        (lambda: confusion_matrix([0, 1], [-1, 1], 3), "labels contain class -1"),
        (lambda: confusion_matrix([0], [0], 0), "num_classes must be"),
    ],
)
def test_errors(call, message):
    with pytest.raises(MetricError, match=message):
        call()

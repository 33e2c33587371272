"""Face verification accuracy: the k-fold protocol of LFW-style benchmarks.

Reproduces ``calculate_roc`` from insightface / facenet (``lfw.py`` / ``verification.py``), the
code behind the accuracies face papers report on LFW, CFP-FP, AgeDB-30:

* the embeddings come as interleaved pairs: rows ``2i`` and ``2i+1`` are pair ``i``;
* the distance of a pair is the *squared* L2 distance of its two embeddings;
* a pair is predicted "same" when its distance is *strictly below* the threshold;
* thresholds are ``np.arange(0, 4, 0.01)`` (squared distances of unit vectors lie in [0, 4]);
* the pairs are split into ``nrof_folds`` contiguous folds (sklearn ``KFold(shuffle=False)``:
  the first ``P % k`` folds hold one extra pair); for each fold, the threshold with the best
  accuracy on the *other* folds (the first maximum, ``np.argmax``) is applied to the fold.

The embeddings are not normalised here (insightface normalises before calling); use
``fuse_flip`` (or L2-normalise) first so that the 0..4 threshold range makes sense.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from strabench.metrics import MetricError
from strabench.metrics._arrays import to_numpy

__all__ = ["THRESHOLDS", "evaluate", "fuse_flip", "kfold_splits", "pair_distances"]

THRESHOLDS: np.ndarray = np.arange(0, 4, 0.01)
"""The threshold grid of insightface's ``evaluate`` (400 values, 0.00 .. 3.99)."""
THRESHOLDS.setflags(write=False)

ArrayOrTensor = TypeVar("ArrayOrTensor")


def kfold_splits(num_items: int, num_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of contiguous folds, exactly as sklearn ``KFold(shuffle=False)``.

    Reimplemented (sklearn is not a dependency) because fold membership changes the reported
    accuracy: the first ``num_items % num_folds`` folds are one item larger.
    """
    if num_folds < 2:
        raise MetricError(f"nrof_folds must be at least 2, got {num_folds}")
    if num_folds > num_items:
        raise MetricError(f"nrof_folds={num_folds} is larger than the number of pairs ({num_items})")
    sizes = np.full(num_folds, num_items // num_folds, dtype=np.int64)
    sizes[: num_items % num_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    indices = np.arange(num_items)
    return [
        (np.concatenate([indices[:start], indices[stop:]]), indices[start:stop])
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]


def pair_distances(embeddings: Any) -> np.ndarray:
    """Squared L2 distance of each interleaved pair (rows 2i and 2i+1); float64."""
    emb = to_numpy(embeddings)
    if emb.ndim != 2:
        raise MetricError(f"embeddings must be 2-D (2 * pairs x dim), got shape {emb.shape}")
    if emb.shape[0] % 2:
        raise MetricError(
            f"embeddings have {emb.shape[0]} rows, an odd number: pairs are interleaved, so "
            "rows 2i and 2i+1 must form pair i"
        )
    emb = emb.astype(np.float64)
    if not np.isfinite(emb).all():
        raise MetricError("embeddings contain NaN or inf: check the model's output")
    diff = emb[0::2] - emb[1::2]
    return np.sum(np.square(diff), axis=1)


def evaluate(embeddings: Any, issame: Any, nrof_folds: int = 10) -> dict[str, Any]:
    """k-fold verification accuracy (see the module doc for the protocol).

    Returns ``{"accuracy": per-fold accuracies, "mean": float, "std": float (population std, as
    ``np.std``), "thresholds": the threshold chosen for each fold, "pair_correct": whether each
    pair was classified correctly in its test fold, "pair_fold": the fold each pair was tested in}``
    (the per-pair outcomes are what a test-set bootstrap resamples, within folds).
    """
    dist = pair_distances(embeddings)
    same = to_numpy(issame)
    if same.ndim != 1 or same.shape[0] != dist.shape[0]:
        raise MetricError(
            f"issame has shape {same.shape} but embeddings hold {dist.shape[0]} pairs "
            f"({2 * dist.shape[0]} rows); expected ({dist.shape[0]},)"
        )
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise MetricError("issame must hold booleans (or 0/1)")
        same = same.astype(bool)
    splits = kfold_splits(dist.shape[0], int(nrof_folds))

    # correct[p, t]: is pair p classified correctly at threshold t. (P x 400 booleans.)
    correct = (dist[:, None] < THRESHOLDS[None, :]) == same[:, None]
    accuracy = np.zeros(len(splits))
    chosen = np.zeros(len(splits))
    pair_correct = np.zeros(dist.shape[0], dtype=bool)
    pair_fold = np.zeros(dist.shape[0], dtype=np.int64)
    for fold, (train, test) in enumerate(splits):
        # Same division as insightface (count / n), so np.argmax sees identical ties.
        train_acc = correct[train].sum(axis=0) / train.size
        best = int(np.argmax(train_acc))
        chosen[fold] = THRESHOLDS[best]
        accuracy[fold] = correct[test, best].sum() / test.size
        pair_correct[test] = correct[test, best]
        pair_fold[test] = fold
    return {
        "accuracy": accuracy,
        "mean": float(np.mean(accuracy)),
        "std": float(np.std(accuracy)),
        "thresholds": chosen,
        "pair_correct": pair_correct,
        "pair_fold": pair_fold,
    }


def fuse_flip(emb: ArrayOrTensor, emb_flipped: ArrayOrTensor) -> ArrayOrTensor:
    """Test-time flip augmentation: sum each image's and its mirror's embedding, L2-normalise.

    The usual face-recognition evaluation (insightface's "flip" test). Works on numpy arrays or
    torch tensors and returns the same kind.
    """
    a_shape, b_shape = tuple(emb.shape), tuple(emb_flipped.shape)  # type: ignore[attr-defined]
    if a_shape != b_shape:
        raise MetricError(
            f"embeddings {a_shape} and flipped embeddings {b_shape} must have the same shape"
        )
    if len(a_shape) != 2:
        raise MetricError(f"embeddings must be 2-D (samples x dim), got shape {a_shape}")
    if hasattr(emb, "detach"):
        import torch.nn.functional as F

        return F.normalize(emb + emb_flipped, dim=1)  # type: ignore[operator]
    fused = np.asarray(emb, dtype=np.float64) + np.asarray(emb_flipped, dtype=np.float64)
    norm = np.linalg.norm(fused, axis=1, keepdims=True)
    return fused / np.maximum(norm, 1e-12)  # type: ignore[return-value]

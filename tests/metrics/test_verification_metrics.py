"""Tests for strabench.metrics.verification: a hand-worked case, a slow reference, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strabench.metrics import MetricError
from strabench.metrics.verification import (
    THRESHOLDS,
    evaluate,
    fuse_flip,
    kfold_splits,
    pair_distances,
)


def reference_calculate_roc(embeddings, issame, nrof_folds):
    """insightface's calculate_roc / calculate_accuracy, loop for loop (accuracy part only)."""
    thresholds = np.arange(0, 4, 0.01)
    embeddings1, embeddings2 = embeddings[0::2], embeddings[1::2]
    issame = np.asarray(issame)
    nrof_pairs = len(issame)
    dist = np.sum(np.square(np.subtract(embeddings1, embeddings2)), 1)
    # sklearn KFold(n_splits, shuffle=False), written out
    fold_sizes = [nrof_pairs // nrof_folds + (1 if i < nrof_pairs % nrof_folds else 0) for i in range(nrof_folds)]
    starts = np.cumsum([0] + fold_sizes)
    accuracy, best_thresholds = [], []
    for fold in range(nrof_folds):
        test_set = list(range(starts[fold], starts[fold + 1]))
        train_set = [i for i in range(nrof_pairs) if i not in test_set]

        def calculate_accuracy(threshold, idx):
            predict_issame = np.less(dist[idx], threshold)
            actual = issame[idx]
            tp = np.sum(np.logical_and(predict_issame, actual))
            tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual)))
            return float(tp + tn) / len(idx)

        acc_train = np.zeros(len(thresholds))
        for t_idx, threshold in enumerate(thresholds):
            acc_train[t_idx] = calculate_accuracy(threshold, train_set)
        best = np.argmax(acc_train)
        best_thresholds.append(thresholds[best])
        accuracy.append(calculate_accuracy(thresholds[best], test_set))
    return np.array(accuracy), np.array(best_thresholds)


def embeddings_from_distances(distances):
    """1-D embeddings 0 and sqrt(d): pair i has squared distance d_i."""
    emb = np.zeros((2 * len(distances), 1))
    emb[1::2, 0] = np.sqrt(distances)
    return emb


def test_hand_computed_four_pairs_two_folds():
    # Pair distances (squared) chosen away from the 0.01 grid:
    #   pair 0: 0.45^2 = 0.2025  same     } fold 0
    #   pair 1: 1.05^2 = 1.1025  different}
    #   pair 2: 0.65^2 = 0.4225  same     } fold 1
    #   pair 3: 0.85^2 = 0.7225  different}
    # Fold 0 is tested with the threshold learned on fold 1 (pairs 2, 3): accuracy is 1 for any
    #   t in [0.43, 0.72] (predict same iff d < t); the first maximum is t = 0.43. On fold 0,
    #   0.2025 < 0.43 (same, right) and 1.1025 >= 0.43 (different, right): accuracy 1.
    # Fold 1 is tested with the threshold learned on fold 0 (pairs 0, 1): accuracy 1 for
    #   t in [0.21, 1.10]; first maximum t = 0.21. On fold 1, 0.4225 >= 0.21 says "different"
    #   for a same pair (wrong), 0.7225 "different" (right): accuracy 1/2.
    # mean = 0.75, std (population) = 0.25.
    emb = np.array([[0.0], [0.45], [0.0], [1.05], [0.0], [0.65], [0.0], [0.85]])
    result = evaluate(emb, [True, False, True, False], nrof_folds=2)
    np.testing.assert_allclose(result["thresholds"], [0.43, 0.21])
    np.testing.assert_allclose(result["accuracy"], [1.0, 0.5])
    assert result["mean"] == pytest.approx(0.75)
    assert result["std"] == pytest.approx(0.25)


def test_fold_sizes_when_pairs_do_not_divide():
    splits = kfold_splits(7, 3)
    assert [test.tolist() for _, test in splits] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [train.tolist() for train, _ in splits] == [[3, 4, 5, 6], [0, 1, 2, 5, 6], [0, 1, 2, 3, 4]]
    assert [test.size for _, test in kfold_splits(10, 4)] == [3, 3, 2, 2]
    # The fold sizes show up in the accuracies. 7 pairs, all at squared distance 0.35^2 =
    # 0.1225: any t <= 0.12 calls every pair "different", any t >= 0.13 calls every pair "same".
    #   issame = F T T | F T | F T       (folds of 3, 2, 2)
    # fold 0: train = F T F T -> 2/4 either way, first maximum t = 0.00 -> all "different"
    #         on F T T: 1/3.
    # fold 1: train = F T T F T -> 3/5 for t >= 0.13, first maximum t = 0.13 -> all "same"
    #         on F T: 1/2.   fold 2: likewise, 1/2.
    issame = np.array([False, True, True, False, True, False, True])
    emb = embeddings_from_distances(np.full(7, 0.35**2))
    result = evaluate(emb, issame, nrof_folds=3)
    np.testing.assert_allclose(result["accuracy"], [1 / 3, 1 / 2, 1 / 2])
    np.testing.assert_allclose(result["thresholds"], [0.0, 0.13, 0.13])


def test_perfect_separation():
    # Identical embeddings for same pairs (d = 0), far apart for different pairs. (Separation
    # alone is not enough: the first maximum sits just above the largest *training* same-pair
    # distance, so a larger same-pair distance in the test fold is still an error -- the
    # protocol, not a bug; the hand-computed case above shows it.)
    rng = np.random.default_rng(0)
    same_d = np.zeros(50)
    diff_d = rng.uniform(1.6, 3.9, 50)
    distances = np.empty(100)
    distances[0::2], distances[1::2] = same_d, diff_d
    issame = np.tile([True, False], 50)
    result = evaluate(embeddings_from_distances(distances), issame)
    np.testing.assert_array_equal(result["accuracy"], np.ones(10))
    assert result["mean"] == 1.0 and result["std"] == 0.0
    assert result["accuracy"].shape == (10,) and result["thresholds"].shape == (10,)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pairs,folds", [(40, 10), (23, 4), (9, 2)])
def test_matches_insightface_reference(seed, pairs, folds):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(2 * pairs, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    issame = rng.random(pairs) < 0.5
    emb[1::2][issame] = emb[0::2][issame] + 0.3 * emb[1::2][issame]  # same pairs closer
    result = evaluate(emb, issame, nrof_folds=folds)
    acc_ref, thr_ref = reference_calculate_roc(emb, issame, folds)
    np.testing.assert_allclose(result["accuracy"], acc_ref)
    np.testing.assert_array_equal(result["thresholds"], thr_ref)
    assert result["mean"] == pytest.approx(np.mean(acc_ref))


def test_threshold_grid_is_insightfaces():
    assert THRESHOLDS.shape == (400,)
    np.testing.assert_array_equal(THRESHOLDS, np.arange(0, 4, 0.01))


@pytest.mark.parametrize(
    "emb,issame,folds,message",
    [
        (np.zeros((5, 3)), [True, False], 2, "odd number"),
        (np.zeros((4, 3)), [True, False, True], 2, "holds? 2 pairs|hold 2 pairs"),
        (np.zeros((8, 3)), [True] * 4, 5, "larger than the number of pairs"),
        (np.zeros((8, 3)), [True] * 4, 1, "at least 2"),
        (np.zeros(8), [True] * 4, 2, "2-D"),
        (np.full((4, 2), np.nan), [True, False], 2, "NaN"),
        (np.zeros((4, 2)), [2, 0], 2, "booleans"),
    ],
)
def test_bad_inputs(emb, issame, folds, message):
    with pytest.raises(MetricError, match=message):
        evaluate(emb, issame, nrof_folds=folds)


def test_pair_distances_are_squared_l2():
    emb = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(pair_distances(emb), [25.0, 0.0])


def test_fuse_flip_numpy_and_torch():
    import torch

    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0]])
    fused = fuse_flip(a, b)
    np.testing.assert_allclose(fused, [[2**-0.5, 2**-0.5], [0.0, 1.0]])
    fused_t = fuse_flip(torch.tensor(a), torch.tensor(b))
    assert isinstance(fused_t, torch.Tensor)
    np.testing.assert_allclose(fused_t.numpy(), fused)
    with pytest.raises(MetricError, match="same shape"):
        fuse_flip(a, b[:1])


def test_accepts_torch_inputs():
    import torch

    emb = torch.tensor([[0.0], [0.45], [0.0], [1.05], [0.0], [0.65], [0.0], [0.85]])
    result = evaluate(emb, torch.tensor([True, False, True, False]), nrof_folds=2)
    np.testing.assert_allclose(result["accuracy"], [1.0, 0.5])


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 30).flatmap(
        lambda pairs: st.tuples(
            st.lists(st.floats(0.0, 4.5, allow_nan=False), min_size=pairs, max_size=pairs),
            st.lists(st.booleans(), min_size=pairs, max_size=pairs),
            st.integers(2, pairs),
        )
    )
)
def test_property_accuracy_in_unit_interval_and_matches_reference(case):
    distances, issame, folds = case
    emb = embeddings_from_distances(np.array(distances))
    result = evaluate(emb, issame, nrof_folds=folds)
    assert ((0.0 <= result["accuracy"]) & (result["accuracy"] <= 1.0)).all()
    assert 0.0 <= result["mean"] <= 1.0
    assert set(np.round(result["thresholds"], 2)) <= set(np.round(THRESHOLDS, 2))
    acc_ref, thr_ref = reference_calculate_roc(emb, np.array(issame), folds)
    np.testing.assert_allclose(result["accuracy"], acc_ref)
    np.testing.assert_array_equal(result["thresholds"], thr_ref)

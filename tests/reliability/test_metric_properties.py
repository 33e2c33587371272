"""Property tests for the metrics on hostile inputs -- what tests/metrics/ does not cover.

tests/metrics/ already checks, on distinct distances: mAP and CMC ranges, CMC monotone, the
slow reference, gallery and query order invariance; and verification accuracy in [0, 1] on
1-D embeddings. Missing, and added here: inputs a diverging or broken model produces --
tied distances, +-inf, huge magnitudes, integer distances, NaN; arbitrary-dimension face
embeddings including identical and non-finite ones. The contract: either a result inside its
range (matching the slow reference for ReID) or a ``MetricError`` (a StrabenchError), never
another exception and never a NaN metric.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strabench.errors import StrabenchError

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)

# distances a broken model can produce: ties (few distinct values), infinities, huge and tiny numbers
distances = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0]),
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
    st.sampled_from([np.inf, -np.inf, 1e-300, -0.0]),
)


def reference_reid(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Slow, obviously correct: per query, sort by (distance, gallery index), drop same id+camera."""
    aps, curves = [], []
    for i in range(distmat.shape[0]):
        order = sorted(range(distmat.shape[1]), key=lambda j: (distmat[i, j], j))
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            continue
        hits, precisions = 0, []
        for rank, hit in enumerate(matches, start=1):
            if hit:
                hits += 1
                precisions.append(hits / rank)
        aps.append(sum(precisions) / len(precisions))
        first = matches.index(True) + 1
        curves.append([1.0 if first <= k else 0.0 for k in range(1, max_rank + 1)])
    if not aps:
        return None, None
    return np.mean(curves, axis=0), float(np.mean(aps))


@st.composite
def reid_problems(draw, nan: bool = False):
    num_q, num_g = draw(st.integers(1, 5)), draw(st.integers(1, 10))
    values = distances | st.just(np.nan) if nan else distances
    dist = np.array(draw(st.lists(values, min_size=num_q * num_g, max_size=num_q * num_g)), dtype=np.float64)
    dist = dist.reshape(num_q, num_g)
    if draw(st.booleans()):
        with np.errstate(over="ignore"):
            dist = dist.astype(np.float32)  # huge values overflow to inf: must still be handled
    ints = lambda n, hi: np.array(draw(st.lists(st.integers(0, hi), min_size=n, max_size=n)))  # noqa: E731
    return dist, ints(num_q, 3), ints(num_g, 3), ints(num_q, 2), ints(num_g, 2)


def _evaluate(problem, max_rank):
    from strabench.metrics.reid import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small galleries shrink max_rank with a warning
        return evaluate(*problem, max_rank=max_rank)


@SETTINGS
@given(reid_problems())
def test_reid_on_ties_and_infinities_is_in_range_and_matches_reference(problem) -> None:
    num_g = problem[0].shape[1]
    ref_cmc, ref_map = reference_reid(*problem, max_rank=num_g)
    try:
        cmc, mean_ap = _evaluate(problem, max_rank=num_g)
    except StrabenchError:
        assert ref_map is None, "refused a problem that has valid queries"
        return
    assert ref_map is not None
    assert np.isfinite(mean_ap) and 0.0 <= mean_ap <= 1.0
    assert np.isfinite(cmc).all() and ((0.0 <= cmc) & (cmc <= 1.0)).all()
    assert (np.diff(cmc) >= 0).all()
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-12)
    assert mean_ap == pytest.approx(ref_map, abs=1e-12)


@SETTINGS
@given(reid_problems(), st.randoms(use_true_random=False))
def test_reid_query_order_invariance_holds_with_ties(problem, rnd) -> None:
    """Ties are broken by gallery index, so query order cannot matter even when distances tie."""
    dist, q_pids, g_pids, q_cams, g_cams = problem
    perm = list(range(dist.shape[0]))
    rnd.shuffle(perm)
    try:
        cmc, mean_ap = _evaluate(problem, max_rank=dist.shape[1])
    except StrabenchError:
        return
    cmc_p, map_p = _evaluate((dist[perm], q_pids[perm], g_pids, q_cams[perm], g_cams), max_rank=dist.shape[1])
    np.testing.assert_allclose(cmc, cmc_p, atol=1e-12)
    assert mean_ap == pytest.approx(map_p, abs=1e-12)


@SETTINGS
@given(reid_problems(nan=True), st.integers(1, 60))
def test_reid_never_raises_anything_but_our_error(problem, max_rank) -> None:
    try:
        cmc, mean_ap = _evaluate(problem, max_rank=max_rank)
    except StrabenchError:
        return
    assert not np.isnan(problem[0]).any(), "NaN distances must be refused, not ranked"
    assert 0.0 <= mean_ap <= 1.0 and len(cmc) == min(max_rank, problem[0].shape[1])


embedding_values = st.one_of(
    st.floats(-10, 10, allow_nan=False), st.sampled_from([0.0, 1.0]), st.sampled_from([np.nan, np.inf, -np.inf, 1e200])
)


@st.composite
def verification_problems(draw):
    pairs, dim = draw(st.integers(2, 16)), draw(st.integers(1, 6))
    emb = np.array(draw(st.lists(embedding_values, min_size=2 * pairs * dim, max_size=2 * pairs * dim))).reshape(2 * pairs, dim)
    if draw(st.booleans()):
        emb[1::2] = emb[0::2]  # identical pairs: distance 0
    issame = draw(st.lists(st.booleans(), min_size=pairs, max_size=pairs))
    folds = draw(st.integers(2, pairs))
    return emb, issame, folds


@SETTINGS
@given(verification_problems())
def test_verification_accuracy_in_unit_interval_or_our_error(problem) -> None:
    from strabench.metrics.verification import THRESHOLDS, evaluate

    emb, issame, folds = problem
    try:
        result = evaluate(emb, issame, nrof_folds=folds)
    except StrabenchError:
        assert not np.isfinite(emb).all(), "refused finite embeddings"
        return
    assert np.isfinite(emb).all(), "non-finite embeddings must be refused"
    acc = result["accuracy"]
    assert len(acc) == folds and ((0.0 <= acc) & (acc <= 1.0)).all()
    assert 0.0 <= result["mean"] <= 1.0 and result["std"] >= 0.0
    assert set(np.round(result["thresholds"], 2)) <= set(np.round(THRESHOLDS, 2))
    as_ints = evaluate(emb, [int(s) for s in issame], nrof_folds=folds)
    np.testing.assert_array_equal(as_ints["accuracy"], acc)  # 0/1 labels mean the same as booleans

"""Tests for strabench.metrics.reid: hand-computed cases, a slow reference, and properties."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strabench.errors import DataError, StrabenchError
from strabench.metrics import MetricError
from strabench.metrics.reid import (
    _stable_argsort,
    evaluate,
    evaluate_per_query,
    pairwise_distance,
    rank_k_accuracy,
)


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Obviously-correct loop: one query at a time, ties broken by gallery index."""
    distmat = np.asarray(distmat, dtype=np.float64)
    num_q, num_g = distmat.shape
    aps, curves, per_query_ap = [], [], []
    for i in range(num_q):
        order = sorted(range(num_g), key=lambda j: (distmat[i, j], j))
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            per_query_ap.append(float("nan"))
            continue
        hits, precisions = 0, []
        for rank, is_match in enumerate(matches, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / rank)
        ap = sum(precisions) / len(precisions)
        aps.append(ap)
        per_query_ap.append(ap)
        first = matches.index(True) + 1
        curves.append([1.0 if first <= k else 0.0 for k in range(1, max_rank + 1)])
    if not aps:
        return None, None, per_query_ap
    return np.mean(curves, axis=0), float(np.mean(aps)), per_query_ap


def random_problem(seed, num_q, num_g, num_ids, num_cams, dtype=np.float64, ties=False):
    rng = np.random.default_rng(seed)
    if ties:
        distmat = rng.integers(0, 4, size=(num_q, num_g)).astype(dtype)
    else:
        # each row a permutation: distinct distances, so no ties anywhere
        distmat = np.stack([rng.permutation(num_g) for _ in range(num_q)]).astype(dtype)
        distmat = distmat / num_g + rng.normal(size=(num_q, 1))  # negative values too
    return (
        distmat,
        rng.integers(0, num_ids, num_q),
        rng.integers(0, num_ids, num_g),
        rng.integers(0, num_cams, num_q),
        rng.integers(0, num_cams, num_g),
    )


# Two queries x five gallery samples, worked by hand.
#
#   gallery   g0  g1  g2  g3  g4
#   pid        1   2   1   1   2
#   camera     0   1   1   2   0
#
# Query A: pid 1, camera 0, distances [0.1, 0.2, 0.3, 0.4, 0.5] -> sorted g0 g1 g2 g3 g4.
#   g0 has A's pid AND camera -> removed. Kept ranking: g1 (miss, rank 1), g2 (hit, rank 2),
#   g3 (hit, rank 3), g4 (miss, rank 4).
#   AP_A = (1/2 + 2/3) / 2 = 7/12; first correct match at rank 2.
#   (Without the removal g0 would be a hit at rank 1: AP = (1/1 + 2/3 + 3/4) / 3 = 29/36.)
# Query B: pid 2, camera 0, distances [0.5, 0.4, 0.1, 0.3, 0.2] -> sorted g2 g4 g3 g1 g0.
#   g4 has B's pid AND camera -> removed. Kept ranking: g2 (miss, 1), g3 (miss, 2),
#   g1 (hit, 3), g0 (miss, 4).
#   AP_B = (1/3) / 1 = 1/3; first correct match at rank 3.
# mAP = (7/12 + 1/3) / 2 = 11/24.   CMC(1..4) = [0, 1/2, 1, 1].
HAND_DIST = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.1, 0.3, 0.2]], dtype=np.float32)
HAND_Q_PIDS = np.array([1, 2])
HAND_Q_CAMS = np.array([0, 0])
HAND_G_PIDS = np.array([1, 2, 1, 1, 2])
HAND_G_CAMS = np.array([0, 1, 1, 2, 0])


def test_hand_computed_two_queries_five_gallery():
    cmc, mean_ap = evaluate(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=4)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 1.0, 1.0])
    assert mean_ap == pytest.approx(11 / 24)
    per_query = evaluate_per_query(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
    np.testing.assert_allclose(per_query.ap, [7 / 12, 1 / 3])
    np.testing.assert_array_equal(per_query.first_rank, [2, 3])
    np.testing.assert_array_equal(per_query.num_matches, [2, 1])


def test_same_pid_same_camera_removal_changes_the_number():
    # Put query A in a camera no gallery sample has: nothing is removed and g0 becomes a hit.
    per_query = evaluate_per_query(
        HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, np.array([9, 9]), HAND_G_CAMS
    )
    assert per_query.ap[0] == pytest.approx(29 / 36)
    assert per_query.first_rank[0] == 1
    # B without removal: sorted g2 g4 g3 g1 g0 -> hits g4 (rank 2), g1 (rank 4): (1/2 + 2/4) / 2
    assert per_query.ap[1] == pytest.approx(0.5)


def test_small_gallery_shrinks_max_rank_with_warning():
    with pytest.warns(UserWarning, match="only 5 samples"):
        cmc, mean_ap = evaluate(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 1.0, 1.0, 1.0])
    assert mean_ap == pytest.approx(11 / 24)


def test_perfect_ranking():
    # 3 queries, every correct match closer than every wrong one.
    g_pids = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])
    q_pids = np.array([0, 1, 3])
    distmat = np.where(g_pids[None, :] == q_pids[:, None], 0.1, 0.9)
    distmat = distmat + np.arange(10) * 1e-3  # distinct
    cmc, mean_ap = evaluate(distmat, q_pids, g_pids, np.zeros(3), np.ones(10), max_rank=10)
    np.testing.assert_allclose(cmc, np.ones(10))
    assert mean_ap == 1.0


@pytest.mark.parametrize("num_neg,num_pos", [(1, 1), (5, 3), (9, 1), (2, 6)])
def test_worst_ranking(num_neg, num_pos):
    # One query whose num_pos correct matches are ranked after all num_neg wrong ones:
    # AP = mean_j j / (num_neg + j), and the first hit is at rank num_neg + 1.
    g_pids = np.array([1] * num_neg + [7] * num_pos)
    distmat = np.arange(num_neg + num_pos, dtype=np.float64)[None, :]
    cmc, mean_ap = evaluate(
        distmat, [7], g_pids, [0], np.ones(num_neg + num_pos), max_rank=num_neg + num_pos
    )
    expected_ap = np.mean([j / (num_neg + j) for j in range(1, num_pos + 1)])
    assert mean_ap == pytest.approx(expected_ap)
    np.testing.assert_array_equal(cmc, [0.0] * num_neg + [1.0] * num_pos)


def test_queries_without_valid_match_are_skipped():
    # Query 1's only same-pid sample shares its camera (removed); query 2's pid is absent.
    g_pids = np.array([0, 1, 2, 3])
    g_cams = np.array([1, 0, 0, 0])
    distmat = np.array([[0.3, 0.1, 0.2, 0.4], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    cmc, mean_ap = evaluate(distmat, [0, 0, 9], g_pids, [0, 1, 0], g_cams, max_rank=4)
    # Only query 0 counts: pid 0 at g0 (camera 1 != 0), sorted g1 g2 g0 g3 -> rank 3, AP 1/3.
    assert mean_ap == pytest.approx(1 / 3)
    np.testing.assert_allclose(cmc, [0, 0, 1, 1])
    per_query = evaluate_per_query(distmat, [0, 0, 9], g_pids, [0, 1, 0], g_cams)
    np.testing.assert_array_equal(per_query.valid, [True, False, False])
    assert np.isnan(per_query.ap[1:]).all()


def test_no_valid_query_is_an_error():
    with pytest.raises(MetricError, match="none of the 2 queries"):
        evaluate(np.ones((2, 3)), [0, 5], [0, 1, 2], [0, 0], [0, 0, 0], max_rank=3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"q_pids": [0, 1, 2]}, "q_pids has shape"),
        ({"g_pids": [0, 1]}, "g_pids has shape"),
        ({"q_camids": [0]}, "q_camids has shape"),
        ({"g_camids": [[0, 1, 2]]}, "g_camids has shape"),
        ({"distmat": np.ones(3)}, "must be 2-D"),
        ({"distmat": np.ones((0, 3))}, "empty"),
        ({"distmat": np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])}, "NaN"),
        ({"max_rank": 0}, "max_rank"),
    ],
)
def test_bad_inputs_raise_metric_error(kwargs, message):
    args = {
        "distmat": np.ones((2, 3)),
        "q_pids": [0, 1],
        "g_pids": [0, 1, 2],
        "q_camids": [0, 0],
        "g_camids": [1, 1, 1],
        "max_rank": 3,
    }
    args.update(kwargs)
    with pytest.raises(MetricError, match=message) as info:
        evaluate(**args)
    assert isinstance(info.value, DataError) and isinstance(info.value, StrabenchError)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_slow_reference_on_random_data(seed, dtype):
    problem = random_problem(seed, num_q=25, num_g=60, num_ids=8, num_cams=3, dtype=dtype)
    cmc_ref, map_ref, ap_ref = reference_evaluate(*problem, max_rank=20)
    cmc, mean_ap = evaluate(*problem, max_rank=20)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=0, atol=1e-12)
    assert mean_ap == pytest.approx(map_ref, abs=1e-12)
    np.testing.assert_allclose(evaluate_per_query(*problem).ap, ap_ref, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_are_broken_by_gallery_index(seed, dtype):
    problem = random_problem(seed, num_q=20, num_g=40, num_ids=5, num_cams=2, dtype=dtype, ties=True)
    cmc_ref, map_ref, _ = reference_evaluate(*problem, max_rank=10)
    cmc, mean_ap = evaluate(*problem, max_rank=10)
    np.testing.assert_allclose(cmc, cmc_ref, atol=1e-12)
    assert mean_ap == pytest.approx(map_ref, abs=1e-12)


def test_chunking_and_threads_do_not_change_the_result():
    problem = random_problem(3, num_q=37, num_g=50, num_ids=6, num_cams=3)
    base = evaluate(*problem, max_rank=10)
    for chunk_size, workers in [(1, 1), (4, 2), (10, 3), (100, 2)]:
        cmc, mean_ap = evaluate(*problem, max_rank=10, chunk_size=chunk_size, num_workers=workers)
        np.testing.assert_array_equal(cmc, base[0])
        assert mean_ap == base[1]


def test_stable_argsort_float32_matches_numpy_stable():
    rng = np.random.default_rng(0)
    block = rng.normal(size=(6, 200)).astype(np.float32)
    block[:, ::7] = block[:, 1:2]  # ties
    block[0, :5] = [-0.0, 0.0, np.inf, -np.inf, -0.0]
    block[1, :3] = [np.finfo(np.float32).tiny, -np.finfo(np.float32).tiny, 0.0]
    expected = np.argsort(block + np.float32(0.0), axis=1, kind="stable")
    np.testing.assert_array_equal(_stable_argsort(block), expected)
    np.testing.assert_array_equal(_stable_argsort(block.astype(np.float16)), np.argsort(
        block.astype(np.float16).astype(np.float32) + np.float32(0.0), axis=1, kind="stable"
    ))


def test_accepts_torch_tensors():
    import torch

    cmc, mean_ap = evaluate(
        torch.from_numpy(HAND_DIST), torch.tensor(HAND_Q_PIDS), torch.tensor(HAND_G_PIDS),
        torch.tensor(HAND_Q_CAMS), torch.tensor(HAND_G_CAMS), max_rank=4,
    )
    assert mean_ap == pytest.approx(11 / 24)


def test_market1501_size_runs_in_seconds():
    """3,368 x 19,732 (Market-1501's test split). benchmarks/reid_metric.py has the timing;
    here only a generous bound that a per-query Python loop with argsort copies would blow,
    plus a spot check of a few queries against the reference."""
    rng = np.random.default_rng(0)
    num_q, num_g = 3368, 19732
    distmat = rng.random((num_q, num_g), dtype=np.float32)
    q_pids, g_pids = rng.integers(0, 750, num_q), rng.integers(0, 750, num_g)
    q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    start = time.perf_counter()
    result = evaluate_per_query(distmat, q_pids, g_pids, q_cams, g_cams)
    elapsed = time.perf_counter() - start
    assert elapsed < 45, f"evaluate took {elapsed:.1f} s at Market-1501 size"
    for i in (0, 1234, 3367):
        _, _, ap_ref = reference_evaluate(
            distmat[i : i + 1], q_pids[i : i + 1], g_pids, q_cams[i : i + 1], g_cams, max_rank=1
        )
        np.testing.assert_allclose(result.ap[i], ap_ref[0], atol=1e-12)


def test_rank_k_accuracy():
    cmc = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert rank_k_accuracy(cmc, ks=(1, 5)) == {1: 0.5, 5: 0.9}
    with pytest.raises(MetricError, match="rank 10"):
        rank_k_accuracy(cmc)


def test_pairwise_distance_matches_cdist():
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(5, 16, generator=gen), torch.randn(7, 16, generator=gen)
    qn, gn = F.normalize(q, dim=1), F.normalize(g, dim=1)
    euclid = pairwise_distance(q, g)
    torch.testing.assert_close(euclid, torch.cdist(qn, gn) ** 2, atol=1e-5, rtol=1e-5)
    cosine = pairwise_distance(q.numpy(), g.numpy(), metric="cosine")
    torch.testing.assert_close(cosine, 1 - qn @ gn.T, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(euclid, 2 * cosine, atol=1e-5, rtol=1e-5)
    raw = pairwise_distance(q, g, normalize=False)
    torch.testing.assert_close(raw, torch.cdist(q, g) ** 2, atol=1e-4, rtol=1e-5)
    assert (pairwise_distance(q, q) >= 0).all()  # clamped: no rounding negatives


def test_pairwise_distance_errors():
    import torch

    with pytest.raises(MetricError, match="unknown distance metric 'manhattan'"):
        pairwise_distance(torch.ones(2, 3), torch.ones(2, 3), metric="manhattan")
    with pytest.raises(MetricError, match="dim 3 but gallery features have dim 4"):
        pairwise_distance(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(MetricError, match="2-D"):
        pairwise_distance(torch.ones(3), torch.ones(2, 3))


# --- properties -----------------------------------------------------------------------------


@st.composite
def problems(draw):
    num_q = draw(st.integers(1, 6))
    num_g = draw(st.integers(1, 12))
    ids = st.integers(0, 3)
    cams = st.integers(0, 2)
    q_pids = np.array(draw(st.lists(ids, min_size=num_q, max_size=num_q)))
    g_pids = np.array(draw(st.lists(ids, min_size=num_g, max_size=num_g)))
    q_cams = np.array(draw(st.lists(cams, min_size=num_q, max_size=num_q)))
    g_cams = np.array(draw(st.lists(cams, min_size=num_g, max_size=num_g)))
    rows = [draw(st.permutations(range(num_g))) for _ in range(num_q)]
    distmat = np.array(rows, dtype=np.float64).reshape(num_q, num_g)  # distinct within a row
    problem = (distmat, q_pids, g_pids, q_cams, g_cams)
    assume(reference_evaluate(*problem, max_rank=1)[1] is not None)  # some valid query
    return problem


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(problems())
def test_property_ranges_and_reference(problem):
    num_g = problem[0].shape[1]
    cmc, mean_ap = evaluate(*problem, max_rank=num_g)
    assert 0.0 <= mean_ap <= 1.0
    assert ((0.0 <= cmc) & (cmc <= 1.0)).all()
    assert (np.diff(cmc) >= 0).all()
    assert cmc[-1] == 1.0  # every valid query finds its match somewhere in the kept gallery
    cmc_ref, map_ref, _ = reference_evaluate(*problem, max_rank=num_g)
    np.testing.assert_allclose(cmc, cmc_ref, atol=1e-12)
    assert mean_ap == pytest.approx(map_ref, abs=1e-12)


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_property_gallery_order_invariance(problem, rnd):
    distmat, q_pids, g_pids, q_cams, g_cams = problem
    perm = list(range(distmat.shape[1]))
    rnd.shuffle(perm)
    max_rank = distmat.shape[1]
    cmc, mean_ap = evaluate(*problem, max_rank=max_rank)
    cmc_p, mean_ap_p = evaluate(distmat[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm], max_rank=max_rank)
    np.testing.assert_array_equal(cmc, cmc_p)
    assert mean_ap == mean_ap_p


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_property_query_order_invariance(problem, rnd):
    distmat, q_pids, g_pids, q_cams, g_cams = problem
    perm = list(range(distmat.shape[0]))
    rnd.shuffle(perm)
    max_rank = distmat.shape[1]
    cmc, mean_ap = evaluate(*problem, max_rank=max_rank)
    cmc_p, mean_ap_p = evaluate(distmat[perm], q_pids[perm], g_pids, q_cams[perm], g_cams, max_rank=max_rank)
    np.testing.assert_allclose(cmc, cmc_p, atol=1e-12)
    assert mean_ap == pytest.approx(mean_ap_p, abs=1e-12)

"""Person re-identification metrics: CMC and mAP under the Market-1501 protocol.

The protocol (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015; the
same rules as torchreid's ``eval_market1501``):

* for each query, gallery samples with the *same pid and the same camera* are removed (they are
  near-duplicates of the query, not a re-identification);
* a query with no correct match left is skipped (it counts neither for CMC nor for mAP);
* AP is non-interpolated: the mean, over the correct matches, of precision at each hit;
* CMC(k) is the fraction of the remaining queries whose first correct match has rank <= k.

Ties in distance are broken by gallery index (a *stable* sort), so the result is a function of
the inputs alone, not of the sorting algorithm.

The implementation is vectorised: each row of the distance matrix is sorted once, and the
ranks of the (few) same-identity samples are derived from boolean masks and cumulative sums;
there is no Python loop over queries. Queries are processed in chunks to bound memory, spread
over a few threads (numpy's sort releases the GIL). ``benchmarks/reid_metric.py`` times it at
Market-1501 size (3,368 x 19,732 in ~3 s on one core of a 2-core VM).

Junk images (Market-1501's pid -1) are a dataset-loading concern: drop them before calling.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from strabench.metrics import MetricError
from strabench.metrics._arrays import to_numpy

if TYPE_CHECKING:
    import torch

__all__ = [
    "PerQueryResult",
    "evaluate",
    "evaluate_per_query",
    "pairwise_distance",
    "rank_k_accuracy",
]

# Elements of the (chunk x gallery) working arrays per chunk: ~4M keeps each chunk's temporaries
# (an int64 order, a few bool masks, two int32 cumsums) around 60 MB.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class PerQueryResult:
    """Per-query outcome of the protocol; what ``evaluate`` averages.

    Kept public so reports can show which queries fail and tests can compare query by query.
    """

    ap: np.ndarray
    """Average precision per query (float64); NaN where the query has no valid match."""
    first_rank: np.ndarray
    """1-based rank of the first correct match among the kept gallery; 0 where none."""
    num_matches: np.ndarray
    """Number of correct matches left after removing same-pid-same-camera samples."""

    @property
    def valid(self) -> np.ndarray:
        """Queries that count: at least one correct match remains."""
        return self.num_matches > 0


def _check_inputs(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    dist = to_numpy(distmat)
    if dist.ndim != 2:
        raise MetricError(f"distmat must be 2-D (queries x gallery), got shape {dist.shape}")
    if not np.issubdtype(dist.dtype, np.floating):
        dist = dist.astype(np.float64)
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise MetricError(f"distmat is empty (shape {dist.shape}): need queries and gallery")
    arrays = {
        "q_pids": (to_numpy(q_pids), num_q),
        "g_pids": (to_numpy(g_pids), num_g),
        "q_camids": (to_numpy(q_camids), num_q),
        "g_camids": (to_numpy(g_camids), num_g),
    }
    for name, (arr, expected) in arrays.items():
        if arr.shape != (expected,):
            side = "rows (queries)" if name.startswith("q_") else "columns (gallery)"
            raise MetricError(
                f"{name} has shape {arr.shape}, expected ({expected},) to match the "
                f"distmat's {side}; distmat shape is {dist.shape}"
            )
    if np.isnan(dist).any():
        raise MetricError("distmat contains NaN: check the features (NaN loss or empty images?)")
    return (
        dist,
        arrays["q_pids"][0],
        arrays["g_pids"][0],
        arrays["q_camids"][0],
        arrays["g_camids"][0],
    )


def _exclusive_row_cumsum(flags: np.ndarray, rows: np.ndarray, num_rows: int) -> np.ndarray:
    """For entries grouped by row (``rows`` sorted): how many flagged entries precede each one
    within its own row."""
    flags = flags.astype(np.int64)
    before = np.cumsum(flags) - flags  # running count across all rows
    per_row = np.bincount(rows, weights=flags, minlength=num_rows).astype(np.int64)
    return before - (np.cumsum(per_row) - per_row)[rows]


def _stable_argsort(block: np.ndarray) -> np.ndarray:
    """Row-wise argsort with ties broken by column index, fast for float32.

    numpy's stable sort is ~2x slower than its vectorised quicksort. For float32 we make every
    key unique instead: the distance's bits, mapped to an order-preserving uint32, go in the
    high half of a uint64 and the column index in the low half; any sort of unique keys is
    stable. Other dtypes (float64 distances do not fit) use ``kind="stable"``.
    """
    if block.dtype == np.float16:
        block = block.astype(np.float32)  # exact
    if block.dtype != np.float32:
        return np.argsort(block, axis=1, kind="stable")
    bits = (block + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into +0.0
    negative = (bits >> np.uint32(31)).astype(bool)
    # IEEE order -> unsigned order: flip all bits of negatives, only the sign bit of the rest.
    bits = bits ^ np.where(negative, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    keys = bits.astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= np.arange(block.shape[1], dtype=np.uint64)
    keys.sort(axis=1)
    low = 0 if sys.byteorder == "little" else 1
    return keys.view(np.uint32)[:, low::2].astype(np.intp)


def _chunk(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The protocol for one block of query rows: (ap, first_rank, num_matches).

    Only the sort and two elementwise passes touch the whole (rows x gallery) block; the rest
    works on the same-pid entries, which are few per row. For such an entry at sorted position
    ``col``, its rank among the kept samples is ``col + 1 - (removed entries before it)``, and
    precision at a hit is ``(hits up to and including it) / rank``.
    """
    num_rows = dist.shape[0]
    order = _stable_argsort(dist)
    same_pid = np.take_along_axis(g_pids[None, :] == q_pids[:, None], order, axis=1)
    rows, cols = np.nonzero(same_pid)  # row-major: each row's same-pid samples in rank order
    removed = g_camids[order[rows, cols]] == q_camids[rows]  # same pid AND same camera
    del order, same_pid
    is_hit = ~removed
    kept_rank = cols + 1 - _exclusive_row_cumsum(removed, rows, num_rows)
    hit_number = _exclusive_row_cumsum(is_hit, rows, num_rows) + 1

    hit_rows, hit_rank, hit_number = rows[is_hit], kept_rank[is_hit], hit_number[is_hit]
    num_matches = np.bincount(hit_rows, minlength=num_rows).astype(np.int64)
    ap_sum = np.bincount(hit_rows, weights=hit_number / hit_rank, minlength=num_rows)
    first_rank = np.zeros(num_rows, dtype=np.int64)
    first = hit_number == 1
    first_rank[hit_rows[first]] = hit_rank[first]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(num_matches > 0, ap_sum / num_matches, np.nan)
    return ap, first_rank, num_matches


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def evaluate_per_query(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    *,
    chunk_size: int | None = None,
    num_workers: int | None = None,
) -> PerQueryResult:
    """Per-query AP and first-hit rank under the Market-1501 protocol (see the module doc).

    ``distmat`` is (num_query, num_gallery), smaller = more similar; numpy or torch. Rows are
    processed ``chunk_size`` at a time (default: ~4M elements per chunk) on ``num_workers``
    threads (default: the CPUs this process may use).
    """
    dist, q_pids_, g_pids_, q_camids_, g_camids_ = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids
    )
    num_q, num_g = dist.shape
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // num_g)
    if chunk_size < 1:
        raise MetricError(f"chunk_size must be >= 1, got {chunk_size}")
    starts = range(0, num_q, chunk_size)

    def run(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stop = start + chunk_size
        return _chunk(
            dist[start:stop], q_pids_[start:stop], g_pids_, q_camids_[start:stop], g_camids_
        )

    workers = min(num_workers or _default_workers(), len(starts))
    if workers <= 1:
        parts = [run(s) for s in starts]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, starts))
    return PerQueryResult(
        ap=np.concatenate([p[0] for p in parts]),
        first_rank=np.concatenate([p[1] for p in parts]),
        num_matches=np.concatenate([p[2] for p in parts]),
    )


def evaluate(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    *,
    chunk_size: int | None = None,
    num_workers: int | None = None,
) -> tuple[np.ndarray, float]:
    """CMC curve (ranks 1..max_rank) and mAP under the Market-1501 protocol.

    Returns ``(cmc, mAP)`` with ``cmc[k-1]`` = CMC(k). As in torchreid, a gallery smaller than
    ``max_rank`` shrinks ``max_rank`` to the gallery size (with a ``UserWarning``), so ``cmc``
    then has ``num_gallery`` entries. Raises ``MetricError`` when shapes disagree or when no
    query has a correct match left (nothing to average).
    """
    if int(max_rank) != max_rank or max_rank < 1:
        raise MetricError(f"max_rank must be a positive integer, got {max_rank!r}")
    max_rank = int(max_rank)
    result = evaluate_per_query(
        distmat, q_pids, g_pids, q_camids, g_camids, chunk_size=chunk_size, num_workers=num_workers
    )
    num_g = to_numpy(g_pids).shape[0]
    if num_g < max_rank:
        warnings.warn(
            f"gallery has only {num_g} samples, fewer than max_rank={max_rank}: "
            f"the CMC curve is computed up to rank {num_g}",
            UserWarning,
            stacklevel=2,
        )
        max_rank = num_g
    valid = result.valid
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise MetricError(
            f"none of the {valid.size} queries has a correct match in the gallery once "
            "same-identity same-camera samples are removed: check q_pids/g_pids/camids"
        )
    first = result.first_rank[valid]
    # first - 1 in [0, num_g); ranks beyond max_rank land in the overflow bin and are dropped.
    counts = np.bincount(np.minimum(first, max_rank + 1) - 1, minlength=max_rank + 1)
    cmc = np.cumsum(counts[:max_rank]) / num_valid
    return cmc.astype(np.float64), float(result.ap[valid].mean())


def rank_k_accuracy(cmc: Sequence[float] | np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Pick Rank-k accuracies (the numbers papers tabulate) out of a CMC curve.

    Raises ``MetricError`` for a k beyond the curve rather than silently clamping it.
    """
    curve = np.asarray(cmc, dtype=np.float64)
    out: dict[int, float] = {}
    for k in ks:
        if not 1 <= k <= curve.size:
            raise MetricError(f"rank {k} is outside the CMC curve (ranks 1..{curve.size})")
        out[int(k)] = float(curve[k - 1])
    return out


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise MetricError(f"{name} must be 2-D (samples x feature_dim), got shape {tuple(t.shape)}")
    return t.detach().float()


def _squared_euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # ||q - g||^2 = ||q||^2 + ||g||^2 - 2 q.g : one matmul instead of a (Q, G, D) difference.
    dist = q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1).unsqueeze(0) - 2.0 * (q @ g.T)
    return dist.clamp_min_(0.0)  # rounding can make near-duplicates slightly negative


def _cosine(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return 1.0 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).T


_METRICS: dict[str, Callable[[Any, Any], Any]] = {
    "euclidean": _squared_euclidean,
    "cosine": _cosine,
}


def pairwise_distance(
    q_feats: Any, g_feats: Any, metric: str = "euclidean", *, normalize: bool = True
) -> torch.Tensor:
    """Query x gallery distance matrix (float32 tensor on the features' device).

    ``"euclidean"`` is the *squared* Euclidean distance computed by expansion (as torchreid
    does); with ``normalize=True`` (default) the features are L2-normalised first, the usual
    ReID test-time choice, and then it equals ``2 * cosine`` distance, so both rank identically.
    ``"cosine"`` is ``1 - cosine similarity`` (always normalised).
    """
    import torch.nn.functional as F

    if metric not in _METRICS:
        raise MetricError(f"unknown distance metric {metric!r}; choose one of {sorted(_METRICS)}")
    q = _as_tensor(q_feats, "q_feats")
    g = _as_tensor(g_feats, "g_feats")
    if q.shape[1] != g.shape[1]:
        raise MetricError(
            f"query features have dim {q.shape[1]} but gallery features have dim {g.shape[1]}"
        )
    if normalize:
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    return _METRICS[metric](q, g)

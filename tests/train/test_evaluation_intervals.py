"""A ReID run's test-set interval resamples identities: two queries of one person are not two
independent draws."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import Dataset

from strabench.metrics.resampling import bootstrap_mean
from strabench.train.evaluation import STRATEGIES, Predictor


class _Images(Dataset):
    """What the ReID strategy reads: images in order, ``pids``, ``camids``, ``records[i].path``."""

    def __init__(self, images: torch.Tensor, pids: np.ndarray, camids: np.ndarray, prefix: str) -> None:
        self.images, self.pids, self.camids = images, pids, camids
        self.records = [SimpleNamespace(path=Path(f"{prefix}{i:04d}.jpg")) for i in range(len(pids))]

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, index: int):
        return self.images[index], int(self.pids[index]), int(self.camids[index])


def test_reid_interval_resamples_identities_not_queries() -> None:
    """Each person's two queries are the same picture from two cameras whose images the gallery
    lacks, so both get the same AP: the data hold 40 independent values, not 80. The interval is
    then the bootstrap of the 40 identities' means (within Monte-Carlo error), about sqrt(2) wider
    than resampling the 80 queries would claim."""
    rng = np.random.default_rng(0)
    ids, dim = 40, 6
    centres = rng.normal(size=(ids, dim))
    query_images = np.repeat(centres + rng.normal(scale=1.2, size=(ids, dim)), 2, axis=0)
    gallery_images = np.repeat(centres, 3, axis=0) + rng.normal(scale=1.2, size=(3 * ids, dim))
    q_pids, g_pids = np.repeat(np.arange(1, ids + 1), 2), np.repeat(np.arange(1, ids + 1), 3)
    data = SimpleNamespace(
        query=_Images(torch.tensor(query_images, dtype=torch.float32), q_pids, np.tile([0, 1], ids), "q"),
        gallery=_Images(torch.tensor(gallery_images, dtype=torch.float32), g_pids, np.tile([2, 3, 4], ids), "g"),
    )
    result = STRATEGIES["reid"].evaluate(torch.nn.Identity(), data, Predictor(device=torch.device("cpu"), batch_size=32))

    ap = np.array(result.per_item.columns["mAP"], dtype=np.float64)
    assert np.array_equal(ap[0::2], ap[1::2]), "the two queries of a person must tie for the test to mean anything"
    per_identity = ap[0::2]
    ref = stats.bootstrap((per_identity,), np.mean, n_resamples=20_000, method="percentile", rng=np.random.default_rng(1))
    low, high = result.intervals["mAP"]
    assert low == pytest.approx(ref.confidence_interval.low, abs=1.2)
    assert high == pytest.approx(ref.confidence_interval.high, abs=1.2)
    by_query = bootstrap_mean(ap)
    assert (high - low) > 1.25 * (by_query.high - by_query.low)
    assert result.per_item.columns["cluster"][:4] == ["0001", "0001", "0002", "0002"]

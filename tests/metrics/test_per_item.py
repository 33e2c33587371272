"""Per-item scores: each headline column averages to what the metric functions report, and the
CSV round-trips exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strabench.metrics import MetricError, classification, reid, verification
from strabench.metrics.per_item import (
    PerItemTable,
    classification_per_item,
    concat,
    read_per_item,
    reid_per_item,
    verification_per_item,
)


def _reid_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    q_pids = np.repeat(np.arange(1, 21), 2)
    q_cams = np.tile([0, 1], 20)
    g_pids = np.r_[np.repeat(np.arange(1, 21), 3), np.zeros(15, dtype=int), [99]]
    g_cams = np.r_[np.tile([0, 2, 3], 20), rng.integers(0, 6, 15), [0]]
    q_pids = np.r_[q_pids, 99]  # a query whose only match shares its camera: skipped by the protocol
    q_cams = np.r_[q_cams, 0]
    distmat = rng.random((len(q_pids), len(g_pids))).astype(np.float32)
    names = [f"{p:04d}_c{c + 1}s1_{i:06d}_00.jpg" for i, (p, c) in enumerate(zip(q_pids, q_cams))]
    return distmat, q_pids, g_pids, q_cams, g_cams, names


def _mean(values) -> float:
    kept = [float(v) for v in values if v is not None]
    return math.fsum(kept) / len(kept)


def test_reid_columns_average_to_the_protocols_map_and_cmc() -> None:
    distmat, q_pids, g_pids, q_cams, g_cams, names = _reid_case()
    cmc, mean_ap = reid.evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    per_query = reid.evaluate_per_query(distmat, q_pids, g_pids, q_cams, g_cams)
    table = reid_per_item(per_query.ap, per_query.first_rank, per_query.valid, names, q_pids, (1, 5, 10))
    assert list(table.columns) == ["item", "cluster", "mAP", "rank1", "rank5", "rank10"]
    assert table.mean("mAP") == pytest.approx(100.0 * mean_ap, rel=1e-12)
    for k in (1, 5, 10):
        assert table.mean(f"rank{k}") == pytest.approx(100.0 * cmc[k - 1], rel=1e-12)
    # the skipped query stays a row (stable order), with empty metric cells; clusters are pids
    assert table.columns["item"] == names and table.columns["mAP"][-1] is None
    assert table.columns["cluster"][:3] == ["0001", "0001", "0002"]
    assert set(table.columns["rank1"]) - {None} <= {0.0, 100.0}


def test_verification_columns_average_to_the_kfold_accuracy() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(2 * 80, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    issame = rng.random(80) < 0.5
    result = verification.evaluate(emb, issame, nrof_folds=10)
    dist = verification.pair_distances(emb)
    people = [f"P{i // 2}" for i in range(80)]
    table = verification_per_item("lfw", result["pair_correct"], result["pair_fold"], issame, dist, people)
    metrics = {"lfw": 100.0 * result["mean"], "mean": 100.0 * result["mean"]}
    kept = table.consistent_with(metrics)
    assert kept.metrics == ("lfw", "mean")
    assert kept.mean("lfw") == pytest.approx(metrics["lfw"], rel=1e-12)
    assert kept.columns["same"] == [int(s) for s in issame] and kept.columns["cluster"][1] == "lfw/P0"
    # score is the cosine similarity: 1 - |a - b|^2 / 2 for unit vectors
    cos = np.sum(emb[0::2] * emb[1::2], axis=1)
    assert np.allclose(kept.columns["score"], cos)


def test_a_metric_that_is_not_the_mean_of_its_items_gets_no_column() -> None:
    """Folds of unequal size: the k-fold accuracy (mean of fold means) is not the pooled mean."""
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(2 * 23, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    issame = rng.random(23) < 0.5
    result = verification.evaluate(emb, issame, nrof_folds=10)
    table = verification_per_item("bin", result["pair_correct"], result["pair_fold"], issame,
                                  verification.pair_distances(emb))
    pooled = 100.0 * result["pair_correct"].mean()
    assert not math.isclose(pooled, 100.0 * result["mean"], rel_tol=1e-9)  # the case is a real one
    kept = table.consistent_with({"bin": 100.0 * result["mean"], "mean": 100.0 * result["mean"]})
    assert kept.metrics == () and "bin" not in kept.columns and "accuracy" in kept.columns
    assert kept.columns["cluster"][0] == "bin/0"  # no names in a .bin: the pair is its own cluster


def test_classification_columns_and_two_splits() -> None:
    rng = np.random.default_rng(3)
    logits_v, labels_v = rng.normal(size=(30, 7)), rng.integers(0, 7, 30)
    logits_t, labels_t = rng.normal(size=(20, 7)), rng.integers(0, 7, 20)
    tables = [classification_per_item("val", "val_acc", logits_v.argmax(1), labels_v),
              classification_per_item("test", "test_acc", logits_t.argmax(1), labels_t)]
    metrics = {"val_acc": 100.0 * classification.top1_accuracy(logits_v, labels_v),
               "test_acc": 100.0 * classification.top1_accuracy(logits_t, labels_t)}
    table = concat(tables).consistent_with(metrics)
    assert list(table.columns)[:4] == ["item", "cluster", "val_acc", "test_acc"]
    assert table.metrics == ("val_acc", "test_acc")
    assert table.columns["val_acc"][30:] == [None] * 20 and table.columns["test_acc"][:30] == [None] * 30
    assert table.mean("val_acc") == pytest.approx(metrics["val_acc"]) and table.mean("test_acc") == pytest.approx(metrics["test_acc"])
    assert table.columns["item"][0] == "val/0" and table.columns["item"][30] == "test/0"
    assert table.columns["cluster"] == table.columns["item"]


def test_csv_round_trip_is_exact(tmp_path) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams, names = _reid_case(4)
    per_query = reid.evaluate_per_query(distmat, q_pids, g_pids, q_cams, g_cams)
    table = reid_per_item(per_query.ap, per_query.first_rank, per_query.valid, names, q_pids, (1, 5))
    path = tmp_path / "per_item.csv"
    path.write_text(table.to_csv(), encoding="utf-8")
    back = read_per_item(path)
    assert list(back) == list(table.columns)
    assert back["item"] == table.columns["item"] and back["cluster"] == table.columns["cluster"]
    assert back["mAP"] == table.columns["mAP"]  # repr floats: bit for bit
    assert _mean(back["mAP"]) == table.mean("mAP")


def test_bad_tables_and_files_are_refused(tmp_path) -> None:
    with pytest.raises(MetricError, match="unique"):
        PerItemTable({"item": ["a", "a"], "cluster": ["x", "y"]})
    with pytest.raises(MetricError, match="length"):
        PerItemTable({"item": ["a"], "cluster": ["x", "y"]})
    with pytest.raises(MetricError, match="item, cluster"):
        PerItemTable({"cluster": ["x"], "item": ["a"]})
    (tmp_path / "a.csv").write_text("item,cluster,mAP\nq1,1,abc\n")
    with pytest.raises(MetricError, match="not a number"):
        read_per_item(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("name,mAP\n")
    with pytest.raises(MetricError, match="not a per-item table"):
        read_per_item(tmp_path / "b.csv")

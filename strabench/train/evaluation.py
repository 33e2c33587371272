"""Per-task strategies: what a training batch's loss is and how a model is evaluated.

One engine trains all three tasks; the task-specific parts are these small objects, looked up
in ``STRATEGIES`` by task name:

* ReID (App. B.1): query/gallery embeddings in eval mode, L2-normalised, squared Euclidean
  distance matrix, Market-1501 protocol (``strabench.metrics.reid``) -> mAP, rank-1/5/10 (%).
* Face (App. B.2): embedding of each image plus that of its mirror image, summed and
  L2-normalised (``fuse_flip``), k-fold verification accuracy per verification set (%) and
  their mean.
* FER (App. B.3): top-1 accuracy (%) on PublicTest (``val_acc``) and PrivateTest
  (``test_acc``), with confusion matrices.

Only held-out splits are ever evaluated; training-set accuracy is never reported as a score.
Every metric comes with a 95 % interval from resampling the test set (``intervals``; see
``strabench.metrics.resampling``: ReID queries are resampled by identity, verification pairs by
their first person within folds, FER images one by one), the number of test items it averages
(``test_size``) and each item's own score (``per_item``, written as ``per_item.csv``: see
``strabench.metrics.per_item``).

Periodic evaluation during training (``eval_every``) uses a fixed, small subset of the test set
(``TaskStrategy.subset``: the first identities, pairs of each fold, images), so that it costs
little however large the test set is; its numbers are labelled as the subset's wherever they
are stored and are never the run's score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from strabench.metrics.per_item import PerItemTable, classification_per_item, concat, reid_per_item, verification_per_item
from strabench.metrics.resampling import bootstrap_cluster_mean, bootstrap_mean
from strabench.train.losses import LossParts, training_loss

__all__ = ["EvalResult", "Predictor", "STRATEGIES", "SUBSET_SIZES", "TaskStrategy"]

#: The fixed subset periodic evaluation uses, per task: ReID test identities (their queries and
#: gallery images, and distractors in the same proportion), verification pairs per fold and
#: kind (matched / mismatched), FER images per split. About the size of earlier full test sets.
SUBSET_SIZES = {"reid": 100, "face": 30, "fer": 700}


@dataclass(frozen=True)
class EvalResult:
    """``metrics``: the headline numbers (floats, %); ``extra``: JSON-able details (matrices...).

    ``intervals``: per metric, the 95 % test-set bootstrap interval [low, high] in the metric's
    unit (absent where the test set is too small to resample); ``test_size``: per metric, how
    many test items (queries, pairs, images) it averages; ``per_item``: every test item's score
    (each metric column averages to its metric).
    """

    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    test_size: dict[str, int] = field(default_factory=dict)
    per_item: PerItemTable | None = None


@dataclass
class Predictor:
    """Runs a model over a dataset in eval mode, in order, and collects its outputs on the CPU."""

    device: torch.device
    batch_size: int
    num_workers: int = 0
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    channels_last: bool = False

    def _loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(0),  # never draw from the global RNG
        )

    def _batches(self, dataset: Dataset) -> Iterator[Tensor]:
        for batch in self._loader(dataset):
            images = batch[0].to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images

    @torch.no_grad()
    def outputs(self, model: nn.Module, dataset: Dataset, *, flip: bool = False) -> tuple[Tensor, Tensor | None]:
        """Eval-mode outputs for every item (float32, CPU); with ``flip`` also those of mirrored images."""
        was_training = model.training
        model.eval()
        plain, mirrored = [], []
        try:
            for images in self._batches(dataset):
                with self.autocast():
                    plain.append(model(images).float().cpu())
                    if flip:
                        mirrored.append(model(torch.flip(images, dims=[3])).float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(plain), (torch.cat(mirrored) if flip else None)


class TaskStrategy:
    """Base: cross-entropy on the classifier's logits of ``batch[1]`` labels, plus aux losses."""

    task: str = ""
    #: the model's head is sized for the input (face): pass ``input_size`` to ``create_model``
    sized_input: bool = False
    #: metric names shown first in tables
    headline: tuple[str, ...] = ()

    def loss(self, output: Any, batch: Any, aux_weights: Mapping[str, float], device: torch.device) -> LossParts:
        labels = batch[1].to(device, non_blocking=True)
        return training_loss(output.logits, labels, output.aux_losses, aux_weights)

    def evaluate(self, model: nn.Module, data: Any, predictor: Predictor) -> EvalResult:
        raise NotImplementedError

    def subset(self, data: Any, size: int | None = None) -> Any:
        """The fixed part of ``data``'s test split that periodic evaluation uses (same type as
        ``data``; ``size`` defaults to ``SUBSET_SIZES[task]``)."""
        raise NotImplementedError


class ReIDStrategy(TaskStrategy):
    task = "reid"
    headline = ("mAP", "rank1", "rank5", "rank10")

    def evaluate(self, model: nn.Module, data: Any, predictor: Predictor) -> EvalResult:
        from strabench.metrics import reid

        q, _ = predictor.outputs(model, data.query)
        g, _ = predictor.outputs(model, data.gallery)
        distmat = reid.pairwise_distance(q, g, "euclidean", normalize=True)
        max_rank = min(50, g.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cmc, mean_ap = reid.evaluate(distmat, data.query.pids, data.gallery.pids, data.query.camids, data.gallery.camids, max_rank=max_rank)
        per_query = reid.evaluate_per_query(distmat, data.query.pids, data.gallery.pids, data.query.camids, data.gallery.camids)
        valid = per_query.valid
        pids = data.query.pids
        metrics = {"mAP": 100.0 * float(mean_ap)}
        outcomes = {"mAP": per_query.ap[valid]}
        ranks = [k for k in (1, 5, 10) if k <= len(cmc)]
        for k in ranks:
            metrics[f"rank{k}"] = 100.0 * float(cmc[k - 1])
            outcomes[f"rank{k}"] = (per_query.first_rank[valid] <= k).astype(np.float64)
        # A person's queries succeed or fail together: resample identities, not queries.
        intervals = {name: ci.as_list(100.0) for name, values in outcomes.items()
                     if (ci := bootstrap_cluster_mean(values, pids[valid])) is not None}
        names = [record.path.name for record in data.query.records]
        items = reid_per_item(per_query.ap, per_query.first_rank, valid, names, pids, ranks)
        return EvalResult(metrics, {"num_query": int(q.shape[0]), "num_gallery": int(g.shape[0])}, intervals,
                          {name: int(valid.sum()) for name in metrics}, items.consistent_with(metrics))

    def subset(self, data: Any, size: int | None = None) -> Any:
        """The first ``size`` test identities (by pid): their queries and gallery images, and the
        same share of the distractors (pid 0) and junk."""
        size = SUBSET_SIZES[self.task] if size is None else size
        chosen = set(sorted({int(r.pid) for r in data.query.records})[:size])
        share = len(chosen) / max(1, len({int(r.pid) for r in data.query.records}))
        others = [r for r in data.gallery.records if int(r.pid) <= 0]
        step = max(1, round(1.0 / share)) if share > 0 else len(others) + 1
        gallery = [r for r in data.gallery.records if int(r.pid) in chosen] + others[::step]
        query = [r for r in data.query.records if int(r.pid) in chosen]
        return dataclasses.replace(data, query=type(data.query)(query, data.query.transform),
                                   gallery=type(data.gallery)(gallery, data.gallery.transform))


class FaceStrategy(TaskStrategy):
    task = "face"
    sized_input = True
    headline = ("mean",)

    def evaluate(self, model: nn.Module, data: Any, predictor: Predictor) -> EvalResult:
        from strabench.metrics import verification

        metrics: dict[str, float] = {}
        details: dict[str, Any] = {}
        # per set: per-pair outcome, fold (stratum) and first person (cluster)
        outcomes: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        tables: list[PerItemTable] = []
        for name, dataset in sorted(data.verification.items()):
            emb, emb_flip = predictor.outputs(model, dataset, flip=True)
            fused = verification.fuse_flip(emb, emb_flip)
            result = verification.evaluate(fused, dataset.issame, nrof_folds=dataset.num_folds)
            metrics[name] = 100.0 * float(result["mean"])
            details[name] = {
                "std": 100.0 * float(result["std"]),
                "thresholds": [float(t) for t in result["thresholds"]],
                "pairs": int(len(dataset.issame)),
            }
            people = _first_people(dataset)
            correct, fold_of = result["pair_correct"].astype(np.float64), result["pair_fold"]
            outcomes[name] = (correct, fold_of, people or [str(i) for i in range(len(correct))])
            tables.append(verification_per_item(name, result["pair_correct"], fold_of, dataset.issame,
                                                verification.pair_distances(fused), people))
        metrics["mean"] = float(np.mean(list(metrics.values())))
        # Accuracy is the mean of the folds' accuracies: resample within folds, a person's pairs together.
        intervals: dict[str, list[float]] = {}
        for name, (correct, fold_of, people) in outcomes.items():
            if (ci := bootstrap_cluster_mean(correct, people, strata=fold_of)) is not None:
                intervals[name] = ci.as_list(100.0)
        if outcomes:
            values = np.concatenate([c for c, _, _ in outcomes.values()])
            clusters = [f"{name}/{p}" for name, (_, _, people) in outcomes.items() for p in people]
            strata = [f"{name}/{f}" for name, (_, fold_of, _) in outcomes.items() for f in fold_of]
            weights = {f"{name}/{f}": 1.0 / (len(outcomes) * len(np.unique(fold_of)))
                       for name, (_, fold_of, _) in outcomes.items() for f in np.unique(fold_of)}
            if (ci := bootstrap_cluster_mean(values, clusters, strata=strata, weights=weights)) is not None:
                intervals["mean"] = ci.as_list(100.0)
        sizes = {name: details[name]["pairs"] for name in outcomes}
        sizes["mean"] = sum(sizes.values())
        items = concat(tables).consistent_with(metrics) if tables else None
        return EvalResult(metrics, {"verification": details}, intervals, sizes, items)

    def subset(self, data: Any, size: int | None = None) -> Any:
        """In every fold of every set, its first ``size`` matched and first ``size`` mismatched
        pairs (fewer where a fold has fewer), as many in each fold, so the folds stay the folds."""
        from strabench.data.datasets import VerificationDataset
        from strabench.data.verification import VerificationSet
        from strabench.metrics.verification import kfold_splits

        size = SUBSET_SIZES[self.task] if size is None else size
        sets = {}
        for name, dataset in data.verification.items():
            same = np.asarray(dataset.issame, dtype=bool)
            folds = [test for _, test in kfold_splits(len(same), dataset.num_folds)]
            take = min([size] + [int(min(same[t].sum(), (~same[t]).sum())) for t in folds])
            chosen = [int(i) for t in folds for kind in (True, False) for i in t[same[t] == kind][:take]]
            pairs = dataset.pairs
            images = [pairs.images[2 * i + k] for i in chosen for k in (0, 1)]
            subset = VerificationSet(pairs.name, images, same[chosen], pairs.num_folds)
            sets[name] = VerificationDataset(subset, dataset.transform)
        return dataclasses.replace(data, verification=sets)


class FERStrategy(TaskStrategy):
    task = "fer"
    headline = ("val_acc", "test_acc")

    def evaluate(self, model: nn.Module, data: Any, predictor: Predictor) -> EvalResult:
        from strabench.data.fer2013 import CLASS_NAMES
        from strabench.metrics import classification

        metrics: dict[str, float] = {}
        confusion: dict[str, list[list[int]]] = {}
        per_class: dict[str, list[float | None]] = {}
        intervals: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        tables: list[PerItemTable] = []
        for split, key in (("val", "val_acc"), ("test", "test_acc")):
            dataset = getattr(data, split)
            logits, _ = predictor.outputs(model, dataset)
            labels = np.asarray(dataset.labels)
            metrics[key] = 100.0 * classification.top1_accuracy(logits, labels)
            hits = classification.top1_correct(logits, labels).astype(np.float64)
            if (ci := bootstrap_mean(hits)) is not None:  # each image an independent draw
                intervals[key] = ci.as_list(100.0)
            sizes[key] = int(labels.shape[0])
            cm = classification.confusion_matrix(logits, labels, len(CLASS_NAMES))
            confusion[split] = [[int(v) for v in row] for row in cm]
            acc = classification.per_class_accuracy(logits, labels, len(CLASS_NAMES))
            per_class[split] = [None if np.isnan(a) else 100.0 * float(a) for a in acc]
            tables.append(classification_per_item(split, key, logits.argmax(dim=1).numpy(), labels))
        return EvalResult(metrics, {"class_names": list(CLASS_NAMES), "confusion_matrix": confusion, "per_class_acc": per_class},
                          intervals, sizes, concat(tables).consistent_with(metrics))

    def subset(self, data: Any, size: int | None = None) -> Any:
        """The first ``size`` images of each test split (rows are in a random class order)."""
        from strabench.data.datasets import ArrayImageDataset

        size = SUBSET_SIZES[self.task] if size is None else size

        def head(dataset: Any) -> Any:
            return ArrayImageDataset(dataset.images[:size], dataset.labels[:size], dataset.transform)

        return dataclasses.replace(data, val=head(data.val), test=head(data.test))


def _first_people(dataset: Any) -> list[str] | None:
    """The first person of each pair of an LFW-layout set (its image's folder), None for ``.bin`` sets."""
    images = dataset.pairs.images
    if not images or not isinstance(images[0], Path):
        return None
    return [images[2 * i].parent.name for i in range(len(images) // 2)]


STRATEGIES: Mapping[str, TaskStrategy] = {s.task: s for s in (ReIDStrategy(), FaceStrategy(), FERStrategy())}

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
``strabench.metrics.resampling``) and the number of test items it averages (``test_size``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from strabench.metrics.resampling import bootstrap_mean, bootstrap_stratified_mean
from strabench.train.losses import LossParts, training_loss

__all__ = ["EvalResult", "Predictor", "STRATEGIES", "TaskStrategy"]


@dataclass(frozen=True)
class EvalResult:
    """``metrics``: the headline numbers (floats, %); ``extra``: JSON-able details (matrices...).

    ``intervals``: per metric, the 95 % test-set bootstrap interval [low, high] in the metric's
    unit (absent where the test set is too small to resample); ``test_size``: per metric, how
    many test items (queries, pairs, images) it averages.
    """

    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    test_size: dict[str, int] = field(default_factory=dict)


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
        metrics = {"mAP": 100.0 * float(mean_ap)}
        outcomes = {"mAP": per_query.ap[valid]}
        for k in (1, 5, 10):
            if k <= len(cmc):
                metrics[f"rank{k}"] = 100.0 * float(cmc[k - 1])
                outcomes[f"rank{k}"] = (per_query.first_rank[valid] <= k).astype(np.float64)
        intervals = {name: ci.as_list(100.0) for name, values in outcomes.items() if (ci := bootstrap_mean(values)) is not None}
        return EvalResult(metrics, {"num_query": int(q.shape[0]), "num_gallery": int(g.shape[0])}, intervals,
                          {name: int(valid.sum()) for name in metrics})


class FaceStrategy(TaskStrategy):
    task = "face"
    sized_input = True
    headline = ("mean",)

    def evaluate(self, model: nn.Module, data: Any, predictor: Predictor) -> EvalResult:
        from strabench.metrics import verification

        metrics: dict[str, float] = {}
        details: dict[str, Any] = {}
        folds: dict[str, list[np.ndarray]] = {}  # per set, each fold's per-pair outcomes
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
            correct, fold_of = result["pair_correct"].astype(np.float64), result["pair_fold"]
            folds[name] = [correct[fold_of == f] for f in range(len(result["accuracy"]))]
        metrics["mean"] = float(np.mean(list(metrics.values())))
        # Accuracy is the mean of the folds' accuracies: resample pairs within their fold.
        intervals: dict[str, list[float]] = {}
        for name, parts in folds.items():
            if (ci := bootstrap_stratified_mean(parts)) is not None:
                intervals[name] = ci.as_list(100.0)
        every = [part for parts in folds.values() for part in parts]
        weights = [1.0 / (len(folds) * len(parts)) for parts in folds.values() for _ in parts]
        if every and (ci := bootstrap_stratified_mean(every, weights)) is not None:
            intervals["mean"] = ci.as_list(100.0)
        sizes = {name: details[name]["pairs"] for name in folds}
        sizes["mean"] = sum(sizes.values())
        return EvalResult(metrics, {"verification": details}, intervals, sizes)


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
        for split, key in (("val", "val_acc"), ("test", "test_acc")):
            dataset = getattr(data, split)
            logits, _ = predictor.outputs(model, dataset)
            labels = np.asarray(dataset.labels)
            metrics[key] = 100.0 * classification.top1_accuracy(logits, labels)
            hits = classification.top1_correct(logits, labels).astype(np.float64)
            if (ci := bootstrap_mean(hits)) is not None:
                intervals[key] = ci.as_list(100.0)
            sizes[key] = int(labels.shape[0])
            cm = classification.confusion_matrix(logits, labels, len(CLASS_NAMES))
            confusion[split] = [[int(v) for v in row] for row in cm]
            acc = classification.per_class_accuracy(logits, labels, len(CLASS_NAMES))
            per_class[split] = [None if np.isnan(a) else 100.0 * float(a) for a in acc]
        return EvalResult(metrics, {"class_names": list(CLASS_NAMES), "confusion_matrix": confusion, "per_class_acc": per_class},
                          intervals, sizes)


STRATEGIES: Mapping[str, TaskStrategy] = {s.task: s for s in (ReIDStrategy(), FaceStrategy(), FERStrategy())}

"""Tiny training configs for the engine tests: 1-block stages, 16-pixel inputs, a few dozen images."""

from __future__ import annotations

from typing import Any, Callable

import pytest

TINY_MODELS = {"reid": "resnet50_stra", "face": "face_resnet50_stra", "fer": "fer_resnet_stra"}
TINY_SIZES: dict[str, dict[str, int]] = {
    "reid": {
        "num_train_ids": 4, "train_images_per_id": 4, "num_test_ids": 3, "query_cams_per_id": 1,
        "gallery_images_per_id": 2, "num_distractors": 2, "num_junk": 1, "height": 32, "width": 16,
    },
    "face": {"num_train_ids": 4, "images_per_train_id": 4, "num_test_ids": 4, "images_per_test_id": 2,
             "num_folds": 2, "pairs_per_fold": 2, "size": 32},
    "fer": {"num_train": 14, "num_public_test": 7, "num_private_test": 7},
}
TINY_INPUT = {"reid": (16, 16), "face": (16, 16), "fer": (16, 16)}


def make_tiny_config(task: str = "reid", **overrides: Any):
    from strabench.train.config import TrainConfig

    values: dict[str, Any] = {
        "model": TINY_MODELS[task],
        "task": task,
        "epochs": 2,
        "batch_size": 4,
        "input_size": TINY_INPUT[task],
        "data_sizes": dict(TINY_SIZES[task]),
        "model_overrides": {"layers": (1, 1, 1, 1), "feature_dim": 32} if task != "fer" else {"layers": (1, 1, 1, 1)},
        "eval_batch_size": 16,
        "device": "cpu",
        "num_workers": 0,
        "warmup_epochs": 0.0,
        "eval_every": 0,  # at the end only, unless a test asks (the quick recipe evaluates every epoch)
    }
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def tiny_config() -> Callable[..., Any]:
    return make_tiny_config

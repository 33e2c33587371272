"""Training recipes: the paper's settings (appendix B) per task, and a scaled-down CPU profile.

Two profiles:

* ``paper`` -- appendix B of "Structure-Regularized Attention for Deformable Object
  Representation", value for value (B.1 person ReID, B.2 face recognition on the medium-size
  set, B.3 FER2013). Meant for the real datasets on a GPU.
* ``quick`` -- the same losses, optimisers and evaluation protocols, scaled down so that a
  ResNet-50 variant trains on two CPU cores in a few minutes and still clearly learns: small
  synthetic datasets, small inputs, a few epochs, a higher learning rate with a short linear
  warm-up (a from-scratch ResNet-50 with Adam at 3e-4 barely moves in ~100 steps).

Every value is only a default: any ``TrainConfig`` field that is set wins over the recipe.

Decisions where the paper is silent or ambiguous (also in ``docs``/README):

* "parameters of the models from stage 1 to 4 are frozen at the first 8 epochs" (B.1): the
  paper counts the stem as stage 1 (its Fig. 3 calls layer4 "stage 5"), so stages 1-4 are
  ``conv1``..``layer3``; layer4 (where StRA goes), the head and the classifier train from the
  start. Freezing only makes sense for ImageNet-initialised weights, so the recipe freezes only
  when ``pretrained`` is given (``freeze_epochs`` resolves to 0 otherwise). Frozen modules are
  also kept in eval mode (BN statistics frozen), as torchreid's ``open_specified_layers`` does.
* FER "decayed by 0.9 every 5 epochs after 80 epochs, following [26]": [26]'s code multiplies by
  ``0.9 ** ((epoch - 80) // 5)`` for epochs past 80 (0-based), which is ``lr_decay_start=80``,
  ``lr_step=5``, ``lr_gamma=0.9`` here.
* Face evaluation: B.2 says "concatenated and then normalized"; the brief for strabench (and
  insightface's usual "flip test") sums the two embeddings before normalising. We sum
  (``strabench.metrics.verification.fuse_flip``); for unit-norm-ish features this ranks
  pairs very similarly and keeps the embedding 512-d.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from strabench.errors import ConfigError

PROFILES = ("quick", "paper")
TASKS = ("reid", "face", "fer")

#: The synthetic dataset each task trains on when ``data`` is not given.
DEFAULT_DATA = MappingProxyType({"reid": "synthetic_reid", "face": "synthetic_faces", "fer": "synthetic_expressions"})

#: Appendix B, per task. Keys are ``TrainConfig`` field names.
PAPER: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # B.1 Person ReID (Market-1501).
        "reid": MappingProxyType(
            {
                "optimizer": "adam",
                "lr": 3e-4,
                "momentum": 0.0,
                "weight_decay": 5e-4,
                "batch_size": 32,
                "epochs": 100,
                "lr_step": 20,
                "lr_gamma": 0.2,
                "lr_decay_start": 0,
                "milestones": (),
                "warmup_epochs": 0.0,
                "diversity_weight": 1.0,
                "input_size": (256, 128),
                "freeze_epochs_pretrained": 8,
            }
        ),
        # B.2 Face recognition, medium-size training set.
        "face": MappingProxyType(
            {
                "optimizer": "sgd",
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "batch_size": 512,
                "epochs": 20,
                "lr_step": 0,
                "lr_gamma": 0.1,
                "lr_decay_start": 0,
                "milestones": (8, 12),
                "warmup_epochs": 0.0,
                "diversity_weight": 0.1,
                "input_size": (112, 112),
                "freeze_epochs_pretrained": 0,
            }
        ),
        # B.3 Facial expression recognition (FER2013).
        "fer": MappingProxyType(
            {
                "optimizer": "sgd",
                "lr": 0.01,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "batch_size": 128,
                "epochs": 190,
                "lr_step": 5,
                "lr_gamma": 0.9,
                "lr_decay_start": 80,
                "milestones": (),
                "warmup_epochs": 0.0,
                "diversity_weight": 1.0,
                "input_size": (44, 44),
                "freeze_epochs_pretrained": 0,
            }
        ),
    }
)

#: The CPU profile: only what differs from the paper. Tuned by experiment on a 2-core VM. ReID,
#: resnet50_stra from scratch, test mAP: 24 ids x 12 images (gamma=1 init, untrained 12.9):
#: 6.6 after 6 epochs, 19.5 after 40; 150 ids x 6 with zero-init residuals (untrained 2.5):
#: batch 32 for 10 epochs 10.6, for 14 epochs 23.9, batch 16 for 10 epochs 16.7.
#: Why Adam everywhere: from scratch, the bottleneck ResNets (ours and torchvision's resnet50
#: alike) are unstable with SGD at the
#: paper's rate in small batches (training CE rises above chance for epochs), and at the
#: linearly scaled rate (lr * batch / paper batch) they barely move in a few hundred steps;
#: Adam at 1e-3 learns in the budget for all three tasks.
QUICK: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "reid": MappingProxyType(
            {
                "lr": 1e-3,
                "batch_size": 16,
                "epochs": 12,
                "lr_step": 0,
                "milestones": (10,),
                "lr_gamma": 0.2,
                "warmup_epochs": 1.0,
                "input_size": (64, 32),
                "freeze_epochs_pretrained": 1,  # the paper's 8 of 100 epochs, scaled
                # Many identities with few images each: with 24 identities x 12 images the
                # networks memorised the training identities and did not transfer to unseen
                # ones (test mAP at or below the untrained network's); 150 x 6 does.
                # The test set (500 identities, 1,000 queries) gives a trained run a 95 % interval
                # of about +-1.2 mAP when identities are resampled (50 identities: +-5);
                # docs/data.md has the measurements.
                "data_sizes": MappingProxyType(
                    {
                        "num_train_ids": 150,
                        "train_images_per_id": 6,
                        "num_test_ids": 500,
                        "query_cams_per_id": 2,
                        "gallery_images_per_id": 4,
                        "num_distractors": 100,
                        "num_junk": 4,
                        "height": 64,
                        "width": 32,
                    }
                ),
            }
        ),
        "face": MappingProxyType(
            {
                "optimizer": "adam",
                "lr": 1e-3,
                "momentum": 0.0,
                "batch_size": 32,
                "epochs": 12,
                "milestones": (10,),
                "warmup_epochs": 0.5,
                "input_size": (24, 24),
                # 10 folds x 1,000 pairs, each of 15,000 test people in one pair: +-1 point at most
                # (binomial bound at 50 %), where 200 pairs gave +-5.
                "data_sizes": MappingProxyType(
                    {
                        "num_train_ids": 24,
                        "images_per_train_id": 12,
                        "num_test_ids": 15000,
                        "images_per_test_id": 2,
                        "num_folds": 10,
                        "pairs_per_fold": 500,
                        "size": 32,
                    }
                ),
            }
        ),
        "fer": MappingProxyType(
            {
                "optimizer": "adam",
                "lr": 1e-3,
                "momentum": 0.0,
                "batch_size": 16,
                "epochs": 8,
                "lr_step": 0,
                "lr_decay_start": 0,
                "milestones": (7,),
                "lr_gamma": 0.1,
                "warmup_epochs": 0.5,
                "input_size": (24, 24),
                # 9,800 images per test split: +-0.99 points at most (binomial bound at 50 %).
                "data_sizes": MappingProxyType({"num_train": 560, "num_public_test": 9800, "num_private_test": 9800}),
            }
        ),
    }
)

#: While the backbone is frozen (``freeze_epochs``), parameters under these prefixes still
#: train: the last stage, the embedding head and the classifier. Keyed by the registry's
#: ``ModelInfo.family`` (data, not an if-ladder over model names).
TRAINABLE_WHILE_FROZEN: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "resnet50-reid": ("layer4.", "head.", "classifier."),
        "resnet50-face": ("layer4.", "head.", "classifier."),
        "resnet-fer": ("layer4.", "head.", "classifier."),
        # MobileNetV2's "last stage": the 320-channel block (where StRA goes) and the final 1x1.
        "mobilenetv2-reid": ("features.17.", "features.18.", "head.", "classifier."),
    }
)


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return profile


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return task


def recipe(task: str, profile: str) -> dict[str, Any]:
    """The defaults of ``task`` under ``profile``: the paper's values, then the profile's changes."""
    check_task(task)
    values = dict(PAPER[task])
    if check_profile(profile) == "quick":
        values.update(QUICK[task])
        values.setdefault("eval_every", 1)  # quick: evaluate every epoch (< 1 s here), so curves have points
    values.setdefault("data_sizes", {})
    values["data_sizes"] = dict(values["data_sizes"])
    return values

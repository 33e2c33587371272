"""What a synthetic dataset is made of: its sizes and its ``deformation``, checked.

One frozen dataclass per generator. Every field can be set from a suite's or the CLI's
``data_sizes`` table, and every field is part of the dataset's cache key and of the run's
identity, ``deformation`` included (it is a parameter of the images, not of training).

Why the test sets are this large: a run's score is an average over its test items, and the
95 % interval of that average (``strabench.metrics.resampling``) must be narrow enough that
comparing two variants is not decided by which test items happened to be drawn. The defaults
give a single trained run an interval of at most about +-1.5 mAP (ReID, resampling identities)
and +-1 percentage point (verification pairs, expression images: the binomial bound at 50 %);
``docs/data.md`` shows the measurements behind the numbers and what they cost. Training sets
are unchanged by this, so training is not slower.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from strabench.data.fer2013 import SIDE as FER_SIZE  # fixed by the format: 2304 pixels per row
from strabench.errors import ConfigError

NUM_CAMERAS = 6  # Market-1501 has six cameras, named c1..c6
#: ``deformation`` beyond this draws limbs through the head and figures off the image.
MAX_DEFORMATION = 4.0
#: Fields that are not counts: checked as finite numbers in [0, MAX_DEFORMATION].
_FLOAT_FIELDS = ("deformation",)


def _check_fields(obj: Any, minimums: Mapping[str, int]) -> None:
    """Sizes come from TOML or the CLI; reject floats, bools and values below a floor;
    ``deformation`` is a number in [0, MAX_DEFORMATION] (stored as a float, so 1 and 1.0 are one
    dataset)."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if field.name in _FLOAT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"dataset setting {field.name}={value!r} must be a finite number")
            if not 0.0 <= value <= MAX_DEFORMATION:
                raise ConfigError(f"dataset setting {field.name}={value} must be between 0 and {MAX_DEFORMATION:g}")
            object.__setattr__(obj, field.name, float(value))
            continue
        if isinstance(value, bool):
            raise ConfigError(f"dataset size {field.name}={value!r} must be an integer")
        try:
            value = operator.index(value)
        except TypeError:
            raise ConfigError(f"dataset size {field.name}={value!r} must be an integer") from None
        object.__setattr__(obj, field.name, value)
        floor = minimums.get(field.name, 0)
        if value < floor:
            raise ConfigError(f"dataset size {field.name}={value} must be >= {floor}")


@dataclass(frozen=True)
class ReIDSizes:
    """Sizes of ``synthetic_reid`` (its train set suits the quick CPU profile; the test set is
    sized for a narrow interval: 500 identities, 1,000 queries, 2,100 gallery images).

    ``deformation`` scales how much a figure moves between images of one person: 0 rigid (no limb
    swing, lean, head offset or turning around: the camera, background, scale, occluders and
    noise still vary), 1 the walking figures of earlier versions, above 1 wider swings, more
    turning, whole-body tilt and a smooth non-rigid warp (``strabench.data.synthetic_reid``).
    """

    num_train_ids: int = 60
    train_images_per_id: int = 12
    num_test_ids: int = 500
    query_cams_per_id: int = 2  # one query per (test id, camera) for this many cameras
    gallery_images_per_id: int = 4  # includes one same-camera image per query camera
    num_distractors: int = 100  # pid 0000, gallery only
    num_junk: int = 15  # pid -1, dropped by the loader
    height: int = 128
    width: int = 64
    deformation: float = 1.0

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {"num_train_ids": 1, "train_images_per_id": 1, "num_test_ids": 1,
             "query_cams_per_id": 1, "gallery_images_per_id": 2, "height": 32, "width": 16},
        )
        if self.query_cams_per_id > NUM_CAMERAS - 1:
            raise ConfigError(
                f"dataset size query_cams_per_id={self.query_cams_per_id} must be <= "
                f"{NUM_CAMERAS - 1} (a query needs a match from another camera)"
            )
        if self.gallery_images_per_id < self.query_cams_per_id + 1:
            raise ConfigError(
                f"dataset size gallery_images_per_id={self.gallery_images_per_id} must be >= "
                f"query_cams_per_id + 1 = {self.query_cams_per_id + 1}"
            )
        if self.num_train_ids + self.num_test_ids > 1501:
            raise ConfigError("dataset sizes num_train_ids + num_test_ids must be <= 1501 (Market-1501 pids)")

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        test = self.num_test_ids * (self.query_cams_per_id + self.gallery_images_per_id)
        images = self.num_train_ids * self.train_images_per_id + test + self.num_distractors + self.num_junk
        return images, self.height * self.width, 3


@dataclass(frozen=True)
class FaceSizes:
    """Sizes of ``synthetic_faces``; verification pairs follow LFW: person-disjoint folds.

    Pairs use each test person as rarely as the sizes allow; with ``num_test_ids >= 3 x
    num_folds x pairs_per_fold`` (the defaults: 15,000 people for 10 x 500 + 500 pairs) every
    person is in exactly one pair, so the pairs are independent draws. ``deformation`` scales
    head rotation, shift and the intensity of the (non-identity) expression: 0 frontal and
    neutral, 1 earlier versions, 2 twice as much.
    """

    num_train_ids: int = 80
    images_per_train_id: int = 10
    num_test_ids: int = 15000
    images_per_test_id: int = 2
    num_folds: int = 10  # >= 2: each fold's threshold is chosen on the other folds
    pairs_per_fold: int = 500  # matched pairs per fold; as many mismatched again
    size: int = 112
    deformation: float = 1.0

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {"num_train_ids": 2, "images_per_train_id": 1, "num_test_ids": 2,
             "images_per_test_id": 2, "num_folds": 2, "pairs_per_fold": 1, "size": 32},
        )
        if self.num_test_ids < 2 * self.num_folds:
            raise ConfigError(
                f"dataset size num_test_ids={self.num_test_ids} must be >= 2 * num_folds = "
                f"{2 * self.num_folds} (each fold needs two people for a mismatched pair)"
            )
        smallest_fold = self.num_test_ids // self.num_folds
        n = self.images_per_test_id
        matched = smallest_fold * n * (n - 1) // 2
        mismatched = smallest_fold * (smallest_fold - 1) // 2 * n * n
        if min(matched, mismatched) < self.pairs_per_fold:
            raise ConfigError(
                f"dataset size pairs_per_fold={self.pairs_per_fold} is more than a fold of "
                f"{smallest_fold} people x {n} images can give ({min(matched, mismatched)})"
            )

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        images = self.num_train_ids * self.images_per_train_id + self.num_test_ids * self.images_per_test_id
        return images, self.size * self.size, 3


@dataclass(frozen=True)
class ExpressionSizes:
    """Sizes of ``synthetic_expressions`` (rows per FER2013 ``Usage``); classes are balanced.

    9,800 test images per split: the binomial 95 % interval of an accuracy is then at most
    +-0.99 points. ``deformation`` scales head rotation and shift only: the expression is the
    label, so its intensity is the signal and stays as it is.
    """

    num_train: int = 1400
    num_public_test: int = 9800
    num_private_test: int = 9800
    deformation: float = 1.0

    def __post_init__(self) -> None:
        _check_fields(self, {"num_train": 7, "num_public_test": 7, "num_private_test": 7})

    def footprint(self) -> tuple[int, int, int]:
        """(images, pixels per image, channels): what generating and reading the set costs."""
        return self.num_train + self.num_public_test + self.num_private_test, FER_SIZE * FER_SIZE, 1


#: The most decoded pixel bytes (images x H x W x channels, uint8) one synthetic dataset may
#: hold: generating more would take hours and more memory or disk than a benchmark box has.
MAX_SYNTHETIC_BYTES = 16 * 2**30


def resolve_sizes(cls: type, name: str, sizes: Mapping[str, Any]) -> Any:
    """The sizes dataclass, refused (ConfigError) beyond what a machine could generate and read:
    one image over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, which every later
    read would refuse) or more than ``MAX_SYNTHETIC_BYTES`` of decoded pixels in all."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(sizes) - set(valid))
    if unknown:
        raise ConfigError(f"unknown size {unknown[0]!r} for dataset {name}; valid: {', '.join(valid)}")
    resolved = cls(**sizes)
    images, pixels, channels = resolved.footprint()
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and pixels > limit:
        raise ConfigError(f"dataset {name}: one image would have {pixels:.3g} pixels, more than PIL reads ({limit})")
    total = images * pixels * channels
    if total > MAX_SYNTHETIC_BYTES:
        raise ConfigError(
            f"dataset {name}: {images:.3g} images of {pixels:.3g} pixels would be {total / 2**30:.3g} GiB "
            f"of pixels, more than the {MAX_SYNTHETIC_BYTES // 2**30} GiB a synthetic set may hold"
        )
    return resolved

"""Per-task image transforms (torchvision ``transforms.v2``), train and test flavours.

Recipes follow the papers' standard pipelines so accuracy differences come from the blocks
being compared, not from augmentation:

* ReID (Bag-of-Tricks style): resize, flip, pad 10 + random crop, ImageNet normalisation,
  random erasing (p=0.5) -- erasing hides a body part, which is exactly where part-aware
  attention should help.
* Face (ArcFace style): 112x112, flip, ``(x - 127.5) / 128``.
* FER: one grey channel, resize to ``input_size`` (44x44 in the paper), flip, scale to [0, 1]
  then normalise with mean 0.5 / std 0.5.

Random choices draw from torch's global RNG, so ``torch.manual_seed`` (and DataLoader's
per-worker seeding) makes them reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from strabench.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REID_PAD = 10

Transform = Callable[[Any], torch.Tensor]


def check_input_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` as two positive ints, or a ConfigError naming the bad value."""
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"input_size {input_size!r} must be (height, width)") from None
    if h < 8 or w < 8 or (h, w) != tuple(input_size):
        raise ConfigError(f"input_size {tuple(input_size)!r} must be two integers >= 8")
    return h, w


def reid_transform(input_size: tuple[int, int], *, train: bool) -> Transform:
    """PIL RGB image -> float32 (3, H, W), ImageNet-normalised."""
    size = list(check_input_size(input_size))
    steps: list[Any] = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.Pad(REID_PAD), v2.RandomCrop(size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        steps.append(v2.RandomErasing(p=0.5, value=0))  # 0 = the mean colour after normalising
    return v2.Compose([*steps, v2.ToPureTensor()])


def face_transform(input_size: tuple[int, int], *, train: bool) -> Transform:
    """PIL RGB image -> float32 (3, H, W) in about [-1, 1] via ``(x - 127.5) / 128``."""
    size = list(check_input_size(input_size))
    steps: list[Any] = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=False), v2.Normalize([127.5] * 3, [128.0] * 3)]
    return v2.Compose([*steps, v2.ToPureTensor()])


def fer_transform(input_size: tuple[int, int], *, train: bool) -> Transform:
    """uint8 (1, 48, 48) tensor or PIL grey image -> float32 (1, H, W) in [-1, 1]."""
    size = list(check_input_size(input_size))
    steps: list[Any] = [v2.ToImage(), v2.Grayscale(1), v2.Resize(size, antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5], [0.5])]
    return v2.Compose([*steps, v2.ToPureTensor()])

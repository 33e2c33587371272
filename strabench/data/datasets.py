"""torch Datasets over the loaders' records: decode lazily, one item at a time.

Images are read from disk (or decoded from ``.bin`` bytes / the FER array) in
``__getitem__``, so building a Dataset is instant and memory stays flat; a corrupt file
raises :class:`~strabench.errors.DataError` naming it when it is first touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from strabench.data.images import open_image
from strabench.data.market1501 import ReIDRecord
from strabench.data.transforms import Transform
from strabench.data.verification import VerificationSet


class ReIDDataset(Dataset):
    """Yields ``(image, pid, camid)``; ``pids``/``camids`` give the labels without decoding images."""

    def __init__(self, records: Sequence[ReIDRecord], transform: Transform) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        r = self.records[index]
        return self.transform(open_image(r.path)), r.pid, r.camid

    @property
    def pids(self) -> np.ndarray:
        return np.array([r.pid for r in self.records], dtype=np.int64)

    @property
    def camids(self) -> np.ndarray:
        return np.array([r.camid for r in self.records], dtype=np.int64)


class LabelledImageDataset(Dataset):
    """Yields ``(image, label)`` from ``(path, label)`` items (identity folders)."""

    def __init__(self, items: Sequence[tuple[Path, int]], transform: Transform) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return self.transform(open_image(path)), label

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.items], dtype=np.int64)


class VerificationDataset(Dataset):
    """Yields ``(image, index)`` over a :class:`VerificationSet`'s interleaved images.

    Rows ``2i`` and ``2i+1`` are pair ``i``; ``issame[i]`` says whether they match, and
    ``num_folds`` is the cross-validation fold count. Keep ``shuffle=False`` in the
    DataLoader (or put embeddings back by the returned index).
    """

    def __init__(self, pairs: VerificationSet, transform: Transform) -> None:
        self.pairs = pairs
        self.transform = transform

    @property
    def name(self) -> str:
        return self.pairs.name

    @property
    def issame(self) -> np.ndarray:
        return self.pairs.issame

    @property
    def num_folds(self) -> int:
        return self.pairs.num_folds

    def __len__(self) -> int:
        return len(self.pairs.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        source = self.pairs.images[index]
        name = None if isinstance(source, Path) else f"{self.pairs.name}.bin[{index}]"
        return self.transform(open_image(source, name=name)), index


class ArrayImageDataset(Dataset):
    """Yields ``(image, label)`` from an in-memory uint8 ``(N, H, W)`` grey array (FER2013)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Transform) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(np.ascontiguousarray(self.images[index]))[None]
        return self.transform(img), int(self.labels[index])

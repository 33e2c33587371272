"""Market-1501 (and anything laid out like it, e.g. ``synthetic_reid``).

Follows torchreid's reading of the dataset so numbers are comparable with published ones:
file names start ``<pid>_c<cam>``; pid ``-1`` (junk detections) is dropped everywhere; pid
``0`` (distractors) is kept in the gallery only, where it can only ever be a false match;
camera ids become 0-based; training pids are relabelled to ``0..N-1`` for the classifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from strabench.data.images import verify_images
from strabench.errors import DataError

FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_NAME = re.compile(r"([-\d]+)_c(\d)")  # torchreid's pattern, matched at the start of the name


@dataclass(frozen=True)
class ReIDRecord:
    """One image: its file, person id and 0-based camera id."""

    path: Path
    pid: int
    camid: int


@dataclass(frozen=True)
class ReIDSplits:
    """The three Market-1501 splits; ``train`` pids are already relabelled to ``0..num_train_pids-1``."""

    train: list[ReIDRecord]
    query: list[ReIDRecord]
    gallery: list[ReIDRecord]
    num_train_pids: int

    @property
    def num_cams(self) -> int:
        return 1 + max(r.camid for r in (*self.train, *self.query, *self.gallery))


def _parse(path: Path) -> tuple[int, int]:
    match = _NAME.match(path.name)
    if match is None:
        raise DataError(f"{path}: file name does not match Market-1501's '<pid>_c<cam>...' pattern")
    try:
        pid, cam = int(match.group(1)), int(match.group(2))
    except ValueError:
        raise DataError(f"{path}: file name has a malformed person id {match.group(1)!r}") from None
    if pid < -1:
        raise DataError(f"{path}: person id {pid} is negative (only -1, junk, is allowed)")
    if cam < 1:
        raise DataError(f"{path}: camera c{cam} is not valid (cameras start at c1)")
    return pid, cam - 1


def _read_folder(root: Path, split: str) -> list[ReIDRecord]:
    folder = root / FOLDERS[split]
    if not folder.is_dir():
        raise DataError(f"{folder}: Market-1501 folder is missing")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg" and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{folder}: folder holds no .jpg images")
    records = []
    for path in paths:
        pid, camid = _parse(path)
        keep = pid > 0 or (pid == 0 and split == "gallery")
        if keep:
            records.append(ReIDRecord(path, pid, camid))
    if not records:
        raise DataError(f"{folder}: no usable images (all are junk -1 or distractors 0)")
    return records


def load_market1501(root: Path | str, *, verify: bool = False) -> ReIDSplits:
    """Read a Market-1501 root (the folder holding ``bounding_box_train/``, ``query/``, ``bounding_box_test/``).

    ``verify=True`` decodes every image now so a corrupt file fails here rather than in an
    epoch; otherwise corrupt images raise :class:`DataError` when a Dataset loads them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Market-1501 root folder is missing")
    train = _read_folder(root, "train")
    query = _read_folder(root, "query")
    gallery = _read_folder(root, "gallery")
    label = {pid: i for i, pid in enumerate(sorted({r.pid for r in train}))}
    train = [ReIDRecord(r.path, label[r.pid], r.camid) for r in train]
    if verify:
        verify_images(r.path for r in (*train, *query, *gallery))
    return ReIDSplits(train=train, query=query, gallery=gallery, num_train_pids=len(label))

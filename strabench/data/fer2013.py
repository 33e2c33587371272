"""FER2013 (Kaggle ``fer2013.csv``): ``emotion,pixels,Usage`` rows of 48x48 grey faces.

The whole file is small (~35k rows), so it is parsed once into uint8 arrays; every row is
validated and errors name the file *and line*, because a hand-edited or truncated csv is the
usual failure and the line is what the user needs.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strabench.errors import DataError

COLUMNS = ("emotion", "pixels", "Usage")
USAGES = ("Training", "PublicTest", "PrivateTest")
CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SIDE = 48


@dataclass(frozen=True)
class FERSplit:
    """One ``Usage`` split: ``images`` uint8 (N, 48, 48) and ``labels`` int64 (N,) in 0..6."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _parse_pixels(text: str) -> np.ndarray | None:
    """Space-separated ints -> int64 array, or None if any token is not an integer.

    ``np.fromstring`` (text mode) is ~5x faster than ``split()``; numpy flags a token it
    cannot read with a DeprecationWarning or ValueError, which we turn into ``None``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def load_fer2013(csv_path: Path | str) -> dict[str, FERSplit]:
    """Parse and validate ``fer2013.csv``; returns all three splits (a split may be empty)."""
    return _read_csv(Path(csv_path))


def check_fer2013(csv_path: Path | str) -> None:
    """Parse every row, as ``load_fer2013`` will: a bad row 30 000 lines down must refuse the plan,
    not fail every run after it started. All ~35k rows (~290 MB) take a few seconds."""
    _read_csv(Path(csv_path))


def _read_csv(path: Path, *, max_rows: int | None = None) -> dict[str, FERSplit]:
    """The parser behind both: every row is validated; stop after ``max_rows`` data rows."""
    if not path.is_file():
        raise DataError(f"{path}: FER2013 csv file is missing")
    images: dict[str, list[np.ndarray]] = {u: [] for u in USAGES}
    labels: dict[str, list[int]] = {u: [] for u in USAGES}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty (expected header {','.join(COLUMNS)})")
            names = [h.strip() for h in header]
            if sorted(names) != sorted(COLUMNS):
                raise DataError(f"{path}:1: columns are {','.join(names)}; expected {','.join(COLUMNS)}")
            col = {name: names.index(name) for name in COLUMNS}
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(COLUMNS):
                    raise DataError(f"{path}:{line}: {len(row)} fields; expected {len(COLUMNS)}")
                usage = row[col["Usage"]].strip()
                if usage not in images:
                    raise DataError(f"{path}:{line}: Usage {usage!r} is not one of {', '.join(USAGES)}")
                try:
                    label = int(row[col["emotion"]])
                except ValueError:
                    raise DataError(f"{path}:{line}: emotion {row[col['emotion']]!r} is not an integer") from None
                if not 0 <= label < len(CLASS_NAMES):
                    raise DataError(f"{path}:{line}: emotion {label} is outside 0..{len(CLASS_NAMES) - 1}")
                pixels = _parse_pixels(row[col["pixels"]])
                if pixels is None:
                    raise DataError(f"{path}:{line}: pixels contain a non-integer value")
                if pixels.size != SIDE * SIDE:
                    raise DataError(f"{path}:{line}: {pixels.size} pixels; expected {SIDE * SIDE} (48x48)")
                if pixels.min() < 0 or pixels.max() > 255:
                    raise DataError(f"{path}:{line}: pixel values outside 0..255")
                images[usage].append(pixels.astype(np.uint8).reshape(SIDE, SIDE))
                labels[usage].append(label)
                if max_rows is not None and sum(map(len, labels.values())) >= max_rows:
                    break
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text csv ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed csv ({exc})") from None
    if not any(labels.values()):
        raise DataError(f"{path}: csv has a header but no data rows")
    return {
        u: FERSplit(
            images=np.stack(images[u]) if images[u] else np.zeros((0, SIDE, SIDE), np.uint8),
            labels=np.array(labels[u], dtype=np.int64),
        )
        for u in USAGES
    }

"""Decoding images with errors that name the file.

PIL reports a truncated or corrupt JPEG with a bare ``OSError`` deep inside a DataLoader; a
user with 30 000 files needs to know *which* file. Every image strabench decodes goes through
:func:`open_image`, which forces the full decode (``load()``) so truncation is caught here and
turned into a one-line :class:`~strabench.errors.DataError`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from strabench.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Everything PIL raises for a bad file; decompression bombs included.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_image(source: Path | bytes, *, mode: str = "RGB", name: str | None = None) -> Image.Image:
    """Fully decode ``source`` (a path or encoded bytes) into a PIL image in ``mode``.

    ``name`` labels in-memory sources (e.g. ``"lfw.bin[17]"``) in error messages.
    """
    label = name if name is not None else str(source if isinstance(source, Path) else "<bytes>")
    try:
        if isinstance(source, Path):
            with Image.open(source) as img:
                img.load()
                return img.convert(mode)
        with Image.open(io.BytesIO(source)) as img:
            img.load()
            return img.convert(mode)
    except FileNotFoundError:
        raise DataError(f"{label}: image file not found") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{label}: unreadable or corrupt image ({_one_line(exc)})") from None


def verify_images(sources: Iterable[Path]) -> None:
    """Decode every image once so a corrupt file fails at load time, not mid-training."""
    for path in sources:
        open_image(path)


#: How many images per split a plan decodes (``decode_sample``): first, last, evenly spaced.
DECODE_SAMPLE = 32


def decode_sample(sources: Iterable[Path], limit: int = DECODE_SAMPLE) -> None:
    """Decode at most ``limit`` of ``sources`` (the first, the last and evenly spaced ones) and
    check every one is a non-empty file: a plan-time check of a folder whose images do not
    decode that takes the same time for 100 images as for 30 000 (a ``stat`` per file, ``limit``
    decodes). A corrupt image outside the sample is found when a run reads it."""
    paths = list(sources)
    for path in paths:
        try:
            empty = path.stat().st_size == 0
        except FileNotFoundError:
            raise DataError(f"{path}: image file not found") from None
        if empty:
            raise DataError(f"{path}: unreadable or corrupt image (empty file)")
    if len(paths) <= limit:
        chosen = paths
    else:
        step = (len(paths) - 1) / (limit - 1)
        chosen = [paths[round(i * step)] for i in range(limit)]
    for path in chosen:
        open_image(path)

"""Face-recognition training sets stored as one folder per identity (CASIA-WebFace, MS1M dumps).

Same rule as torchvision's ``ImageFolder`` -- labels are the sorted folder names' indices -- but
without torch, and with errors that name the empty folder or the stray layout.
"""

from __future__ import annotations

from pathlib import Path

from strabench.data.images import IMAGE_EXTENSIONS, verify_images
from strabench.errors import DataError


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def load_identity_folder(root: Path | str, *, verify: bool = False) -> list[tuple[Path, int]]:
    """List ``(image path, label)`` for ``root/<identity>/<image>``; labels index the sorted identity names.

    Every identity folder must hold at least one image: an empty one usually means a failed
    copy, and silently skipping it would shift every later label.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: identity folder root is missing")
    identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not identities:
        stray = "; it holds images directly, expected one sub-folder per identity" if _images_in(root) else ""
        raise DataError(f"{root}: no identity sub-folders{stray}")
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(identities):
        images = _images_in(folder)
        if not images:
            raise DataError(f"{folder}: identity folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        items.extend((path, label) for path in images)
    if verify:
        verify_images(path for path, _ in items)
    return items

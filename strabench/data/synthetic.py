"""Procedural stand-ins for Market-1501, LFW/CASIA-style faces and FER2013, and their cache.

Why synthetic data at all: strabench must run end to end on a laptop with no downloads, yet
exercise the *real* data path. So every generator writes the real on-disk format
(Market-1501 folders and file names, ``train/<id>/`` + LFW ``pairs.txt``, FER2013 csv) and the
real loaders read it back.

Why the images look the way they do: attention blocks are supposed to help by finding the
discriminative *parts* of an object that moves and deforms. So identity lives in part-level
cues (shirt/trouser/hair colours, a stripe or logo, a backpack, body proportions; face
geometry and colours; mouth/brow/eye shape for expressions) while nuisance is real: limbs
swing, figures shift and scale, six cameras each have their own colour cast, blur, noise and
background texture, boxes occlude, faces rotate and are lit from the side. How much the
objects deform is a parameter of its own, ``deformation`` (0 rigid, 1 the default, more is
stronger), so the claim can be put to a controlled test. The generators live in
``synthetic_reid`` and ``synthetic_faces``, their sizes in ``synthetic_sizes``.

Every image is drawn from a generator seeded with ``(seed, role, id, index)``, so a dataset
is a pure function of its seed and sizes; JPEG encoding with the same Pillow build is
deterministic, so files are byte-identical run to run.

:func:`ensure_dataset` adds a cache keyed by (name, generator version, seed, sizes) with an
atomic install: generate into a temp folder, write ``manifest.json`` last, ``os.replace``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strabench.cache import cache_root  # re-exported: strabench.data.synthetic.cache_root
from strabench.data.fer2013 import CLASS_NAMES as EXPRESSION_NAMES
from strabench.data.synthetic_faces import write_expressions, write_faces
from strabench.data.synthetic_reid import write_reid
from strabench.data.synthetic_sizes import (
    MAX_DEFORMATION,
    MAX_SYNTHETIC_BYTES,
    NUM_CAMERAS,
    ExpressionSizes,
    FaceSizes,
    ReIDSizes,
    resolve_sizes,
)
from strabench.errors import DataError, WriteError
from strabench.io import write_error

__all__ = [
    "EXPRESSION_NAMES", "MANIFEST_NAME", "MAX_DEFORMATION", "MAX_SYNTHETIC_BYTES", "NUM_CAMERAS", "SYNTHETIC_DATASETS",
    "ExpressionSizes", "FaceSizes", "ReIDSizes", "cache_root", "dataset_folder", "ensure_dataset",
    "generate_synthetic_expressions", "generate_synthetic_faces", "generate_synthetic_reid", "is_cached",
    "remove_stale_generations",
]

MANIFEST_NAME = "manifest.json"
#: A generation folder untouched this long has no live writer (see ``remove_stale_generations``).
STALE_GENERATION_AGE_S = 60.0
_resolve_sizes = resolve_sizes  # the name ``strabench.data.tasks`` checks sizes with


# --------------------------------------------------------------------- public generators
@dataclass(frozen=True)
class _Generator:
    version: int  # bump when the images change, so caches regenerate
    sizes: type
    write: Callable[[Path, int, Any], None]
    entry: str  # what the generator returns, relative to its root ("" = the root)


_GENERATORS: dict[str, _Generator] = {
    "synthetic_reid": _Generator(2, ReIDSizes, write_reid, ""),
    "synthetic_faces": _Generator(2, FaceSizes, write_faces, ""),
    "synthetic_expressions": _Generator(2, ExpressionSizes, write_expressions, "fer2013.csv"),
}
SYNTHETIC_DATASETS = tuple(_GENERATORS)


def _generator(name: str) -> _Generator:
    if name not in _GENERATORS:
        raise DataError(f"unknown synthetic dataset {name!r}; valid: {', '.join(SYNTHETIC_DATASETS)}")
    return _GENERATORS[name]


def _generate(name: str, root: Path, seed: int, sizes: Mapping[str, Any]) -> Path:
    gen = _generator(name)
    resolved = resolve_sizes(gen.sizes, name, sizes)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root}: refusing to generate {name} into a non-empty folder")
    root.mkdir(parents=True, exist_ok=True)
    gen.write(root, int(seed), resolved)
    return root / gen.entry if gen.entry else root


def generate_synthetic_reid(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write a Market-1501-layout ReID set into ``root``; returns ``root``.

    ``bounding_box_train/`` (train ids), ``query/`` (one image per test id and query camera),
    ``bounding_box_test/`` (the test ids' other images, from other cameras *and* from each
    query camera, plus ``0000`` distractors and ``-1`` junk). Sizes: :class:`ReIDSizes`.
    """
    return _generate("synthetic_reid", root, seed, sizes)


def generate_synthetic_faces(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write identity folders ``train/`` plus an LFW-style ``lfw/`` + ``pairs.txt``; returns ``root``.

    Test people are disjoint from training people. Sizes: :class:`FaceSizes`.
    """
    return _generate("synthetic_faces", root, seed, sizes)


def generate_synthetic_expressions(root: Path, *, seed: int = 0, **sizes: int) -> Path:
    """Write ``root/fer2013.csv`` (48x48 grey, 7 classes) and return the csv's path.

    Sizes: :class:`ExpressionSizes`.
    """
    return _generate("synthetic_expressions", root, seed, sizes)


# ---------------------------------------------------------------------------------- cache
def _file_listing(root: Path) -> list[str]:
    """``relative/path<TAB>size`` for every file but the manifest, sorted: cheap staleness check.

    What ``os.walk`` (no symlinked folders entered) with a ``stat`` per file gives, read with
    ``os.scandir``: a dataset of thousands of files is listed by every plan and every run."""
    out = []
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.is_symlink():
                        pending.append((f"{prefix}{entry.name}/", entry.path))
                elif prefix or entry.name != MANIFEST_NAME:
                    out.append(f"{prefix}{entry.name}\t{entry.stat().st_size}")
    return sorted(out)


def _expected_manifest(name: str, gen: _Generator, seed: int, sizes: Any) -> dict[str, Any]:
    return {"name": name, "version": gen.version, "seed": seed, "sizes": dataclasses.asdict(sizes),
            "entry": gen.entry}


def _is_complete(folder: Path, expected: Mapping[str, Any]) -> bool:
    """True iff ``folder`` holds a finished dataset for exactly these parameters."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return False
    listing = _file_listing(folder)
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return manifest.get("file_count") == len(listing) and manifest.get("files_sha256") == digest


def _write_manifest(folder: Path, expected: Mapping[str, Any]) -> None:
    listing = _file_listing(folder)
    manifest = dict(expected, file_count=len(listing),
                    files_sha256=hashlib.sha256("\n".join(listing).encode()).hexdigest())
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)


def _install(tmp: Path, final: Path, expected: Mapping[str, Any]) -> None:
    """Move a finished ``tmp`` into place; tolerate a concurrent process doing the same."""
    error: OSError | None = None
    for _attempt in range(3):
        try:
            os.replace(tmp, final)
            return
        except OSError as exc:  # `final` exists (non-empty dir or a file): someone else's, or stale
            error = exc
        if _is_complete(final, expected):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        trash = final.parent / f".stale-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(final, trash)
        except FileNotFoundError:
            continue
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)
    raise DataError(f"{final}: could not install the generated dataset ({error})")


def _newest_mtime(folder: Path) -> float:
    """The latest change in ``folder`` or its direct entries: a live generator writes a file
    every few milliseconds, which touches the file or its sub-folder."""
    newest = folder.stat().st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def remove_stale_generations(base: Path, *, min_age_s: float = STALE_GENERATION_AGE_S) -> list[Path]:
    """Delete the half-written datasets that killed generations left in the cache ``base``.

    A kill during generation leaves its ``.tmp-<dataset>-*`` folder (never a folder that looks
    complete: see ``ensure_dataset``), and an interrupted install its ``.stale-*`` one; nothing
    else removes them. Only those names are touched, and only once nothing in them changed for
    ``min_age_s`` (a live generator, maybe another process, writes far more often). Returns the
    folders removed.
    """
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    cutoff = time.time() - min_age_s
    for folder in base.iterdir():
        if not folder.name.startswith((".tmp-", ".stale-")) or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            if _newest_mtime(folder) > cutoff:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def dataset_folder(name: str, *, seed: int = 0, cache_dir: Path | str | None = None, **sizes: Any) -> Path:
    """Where ``ensure_dataset`` keeps this dataset: ``<cache>/<name>-<hash of version, seed, sizes>``."""
    gen = _generator(name)
    expected = _expected_manifest(name, gen, int(seed), resolve_sizes(gen.sizes, name, sizes))
    key = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root(cache_dir) / f"{name}-{key}"


def is_cached(name: str, folder: Path, *, seed: int = 0, **sizes: Any) -> bool:
    """Whether ``folder`` (see ``dataset_folder``) holds the finished dataset: nothing to generate."""
    gen = _generator(name)
    return _is_complete(folder, _expected_manifest(name, gen, int(seed), resolve_sizes(gen.sizes, name, sizes)))


def ensure_dataset(name: str, *, seed: int = 0, cache_dir: Path | str | None = None, **sizes: int) -> Path:
    """Return the path of synthetic dataset ``name`` in the cache, generating it if needed.

    The folder is ``<cache>/<name>-<hash of version, seed, sizes>``; it counts as present only
    if its ``manifest.json`` (written last) matches and the file list is intact, otherwise it
    is regenerated into a temp folder and swapped in with ``os.replace``, so an interrupted
    run never leaves a half dataset that looks complete. The returned path is what the
    matching ``generate_*`` returns (the root, or ``fer2013.csv`` for expressions).
    """
    gen = _generator(name)
    resolved = resolve_sizes(gen.sizes, name, sizes)
    expected = _expected_manifest(name, gen, int(seed), resolved)
    base = cache_root(cache_dir)
    final = dataset_folder(name, seed=seed, cache_dir=cache_dir, **sizes)
    if not _is_complete(final, expected):
        remove_stale_generations(base)
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=base))
        except OSError as exc:
            raise DataError(f"{base}: cannot create the dataset cache ({exc.strerror or exc})") from None
        try:
            gen.write(tmp, int(seed), resolved)
            _write_manifest(tmp, expected)
            os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
            _install(tmp, final, expected)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, WriteError):  # disk full mid-generation
                raise write_error("write", Path(exc.filename) if exc.filename else tmp, exc) from exc
            raise
    return final / gen.entry if gen.entry else final

"""Face-verification pair sets: LFW ``pairs.txt`` and insightface ``.bin`` files.

Both become a :class:`VerificationSet`: images interleaved so that rows ``2i`` and ``2i+1``
are pair ``i``, plus ``issame``. That is the layout insightface's evaluation code uses, so a
metrics function written against one works for both.

Why the restricted unpickler: a ``.bin`` is a pickle, and ``pickle.load`` on a downloaded
file runs whatever callable the file names (``os.system`` included). A genuine ``.bin`` holds
only bytes, lists and bools, which need no globals at all, so :func:`load_face_bin` refuses
*every* global lookup before anything can be called, then validates the structure.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strabench.data.images import open_image, verify_images
from strabench.errors import DataError

BIN_FOLDS = 10  # insightface evaluates every .bin with 10-fold cross-validation
_MAGIC = (b"\xff\xd8", b"\x89PNG")  # JPEG, PNG


@dataclass(frozen=True)
class VerificationSet:
    """Pairs for verification: ``images[2i]``/``images[2i+1]`` form pair ``i``; ``issame[i]`` says if they match.

    ``images`` are file paths (LFW folders) or encoded JPEG/PNG bytes (``.bin``); decode either
    with :func:`strabench.data.images.open_image`. ``num_folds`` is the cross-validation fold
    count the set was designed for (LFW header / 10 for ``.bin``).
    """

    name: str
    images: list[Path] | list[bytes]
    issame: np.ndarray
    num_folds: int

    def __len__(self) -> int:
        return len(self.issame)


def _ints(tokens: Sequence[str]) -> list[int] | None:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        return None


def lfw_image_path(image_root: Path, name: str, number: int) -> Path:
    """LFW's naming: ``<root>/<Name>/<Name>_<nnnn>.jpg`` with a 1-based, 4-digit number."""
    return image_root / name / f"{name}_{number:04d}.jpg"


def load_lfw_pairs(pairs_txt: Path | str, image_root: Path | str, *, verify: bool = False) -> VerificationSet:
    """Read an LFW ``pairs.txt`` (header ``<folds> <pairs per fold>``, then matched ``Name n1 n2``
    and mismatched ``Name1 n1 Name2 n2`` lines) and resolve every image under ``image_root``.

    Missing images are reported now, with the pairs line that needs them.
    """
    pairs_txt, image_root = Path(pairs_txt), Path(image_root)
    if not pairs_txt.is_file():
        raise DataError(f"{pairs_txt}: LFW pairs file is missing")
    if not image_root.is_dir():
        raise DataError(f"{image_root}: LFW image folder is missing")
    try:
        lines = pairs_txt.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{pairs_txt}: not a text file") from None
    numbered = [(i + 1, line.split()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise DataError(f"{pairs_txt}: file is empty (expected a '<folds> <pairs per fold>' header)")
    header_line, header_tokens = numbered[0]
    header = _ints(header_tokens)
    if header is None or len(header) not in (1, 2) or min(header) < 1:
        raise DataError(
            f"{pairs_txt}:{header_line}: header {' '.join(header_tokens)!r} is not '<folds> <pairs per fold>'"
        )
    folds, per_fold = (1, header[0]) if len(header) == 1 else (header[0], header[1])
    body = numbered[1:]
    if len(body) != 2 * folds * per_fold:
        raise DataError(
            f"{pairs_txt}: header promises {folds} folds x {per_fold} matched + {per_fold} mismatched = "
            f"{2 * folds * per_fold} pairs, found {len(body)} pair lines"
        )
    images: list[Path] = []
    issame: list[bool] = []
    for line_no, tokens in body:
        if len(tokens) == 3 and (nums := _ints(tokens[1:])) is not None:
            pair = ((tokens[0], nums[0]), (tokens[0], nums[1]))
        elif len(tokens) == 4 and (nums := _ints(tokens[1::2])) is not None:
            pair = ((tokens[0], nums[0]), (tokens[2], nums[1]))
        else:
            raise DataError(
                f"{pairs_txt}:{line_no}: expected 'Name n1 n2' or 'Name1 n1 Name2 n2', got {' '.join(tokens)!r}"
            )
        for name, number in pair:
            if number < 1:
                raise DataError(f"{pairs_txt}:{line_no}: image number {number} must be >= 1")
            path = lfw_image_path(image_root, name, number)
            if not path.is_file():
                raise DataError(f"{path}: image named by {pairs_txt.name} line {line_no} is missing")
            images.append(path)
        issame.append(len(tokens) == 3)
    if verify:
        verify_images(dict.fromkeys(images))
    return VerificationSet(name="lfw", images=images, issame=np.array(issame, dtype=bool), num_folds=folds)


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """What ``_codecs.encode`` does in a bytes object pickled by Python 3 with protocol < 3:
    ``bytes`` are stored as ``_codecs.encode(<str of the byte values>, "latin1")``. Only that
    exact use is accepted (a str and Latin-1), so the name cannot reach any other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _RefusedGlobal("_codecs", f"encode (only (str, 'latin1') is accepted, got {type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that can build bytes, lists, tuples, bools, ints and strings, and nothing else.

    Every route to a callable (GLOBAL, STACK_GLOBAL, INST, OBJ, EXT*) goes through
    ``find_class``, so refusing it here means REDUCE/NEWOBJ/BUILD never get anything to call.
    The one global answered is ``_codecs.encode``, and only with ``_latin1_bytes`` (str ->
    bytes, nothing else), because that is how Python 3 stores ``bytes`` under protocol 2, the
    protocol insightface's own ``.bin`` writers used.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise _RefusedGlobal(module, name)

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent id")


def load_face_bin(path: Path | str, *, verify: bool = False) -> VerificationSet:
    """Read an insightface verification ``.bin``: a pickle of ``(bins, issame_list)``.

    ``bins`` must be a list of encoded JPEG/PNG ``bytes`` (two per pair), ``issame_list`` a
    list of bools. Pickles that name any global, numpy arrays included, are refused unread.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: verification .bin file is missing")
    try:
        with open(path, "rb") as fh:
            obj = _NoGlobalsUnpickler(fh, encoding="bytes").load()
    except _RefusedGlobal as exc:
        what = "numpy-pickled bins are not supported; " if exc.qualname.startswith("numpy") else ""
        raise DataError(
            f"{path}: refused: pickle tries to load global {exc.qualname}; a face .bin may only hold "
            f"bytes, lists and bools ({what}if you trust the file, re-save it as plain data: "
            f"bins, issame = pickle.load(f); pickle.dump(([bytes(b) for b in bins], [bool(s) for s in issame]), out, protocol=4))"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, UnicodeDecodeError, OverflowError) as exc:
        raise DataError(f"{path}: not a valid pickle ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}"
                        + (f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else ""))
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise DataError(
            f"{path}: bins and issame_list must be lists, got {type(bins).__name__} and {type(issame).__name__}"
        )
    if not issame:
        raise DataError(f"{path}: issame_list is empty")
    if len(bins) != 2 * len(issame):
        raise DataError(f"{path}: {len(bins)} images for {len(issame)} pairs; expected {2 * len(issame)}")
    for i, flag in enumerate(issame):
        if not (isinstance(flag, bool) or (isinstance(flag, int) and flag in (0, 1))):
            raise DataError(f"{path}: issame_list[{i}] is {type(flag).__name__} {flag!r}, not a bool")
    images: list[bytes] = []
    for i, blob in enumerate(bins):
        if not isinstance(blob, (bytes, bytearray)):
            raise DataError(f"{path}: bins[{i}] is {type(blob).__name__}, not encoded image bytes")
        if not blob.startswith(_MAGIC):
            raise DataError(f"{path}: bins[{i}] is not a JPEG or PNG image")
        images.append(bytes(blob))
    if verify:
        for i, blob in enumerate(images):
            open_image(blob, name=f"{path}[{i}]")
    issame_array = np.array([bool(f) for f in issame], dtype=bool)
    return VerificationSet(name=path.stem, images=images, issame=issame_array, num_folds=BIN_FOLDS)


def write_face_bin(path: Path | str, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write an insightface-style ``.bin`` (protocol 4: needs no globals, so it round-trips), atomically."""
    path = Path(path)
    if len(images) != 2 * len(issame):
        raise DataError(f"{path}: {len(images)} images for {len(issame)} pairs; expected {2 * len(issame)}")
    payload = pickle.dumps(([bytes(b) for b in images], [bool(s) for s in issame]), protocol=4)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)

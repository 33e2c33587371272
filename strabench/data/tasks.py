"""The one entry point the training engine uses: a spec string in, torch Datasets out.

Spec grammar (``--data`` on the CLI, ``data =`` in a suite)::

    synthetic_reid | synthetic_faces | synthetic_expressions    generated, cached, no path
    market1501:PATH    PATH = Market-1501 root (bounding_box_train/, query/, bounding_box_test/)
    faces:PATH         PATH holds train/<identity>/ images and verification data:
                       lfw/ + pairs.txt (LFW layout) and/or *.bin (insightface) files
    fer2013:PATH       PATH = the fer2013.csv file

Each dataset belongs to one task (reid, face, fer); asking for another task is an error
rather than a silent mismatch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import ConfigError, DataError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from strabench.data.datasets import ReIDDataset, VerificationDataset

TASKS = ("reid", "face", "fer")


@dataclass(frozen=True)
class _Source:
    task: str
    synthetic: bool
    path_help: str = ""


_SOURCES: dict[str, _Source] = {
    "synthetic_reid": _Source("reid", True),
    "synthetic_faces": _Source("face", True),
    "synthetic_expressions": _Source("fer", True),
    "market1501": _Source("reid", False, "the Market-1501 root folder"),
    "faces": _Source("face", False, "a folder with train/ and lfw/ + pairs.txt or *.bin"),
    "fer2013": _Source("fer", False, "the fer2013.csv file"),
}
DATASET_NAMES = tuple(_SOURCES)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: dataset ``name`` and, for real datasets, its ``path``."""

    name: str
    path: Path | None = None

    @property
    def task(self) -> str:
        return _SOURCES[self.name].task

    @property
    def synthetic(self) -> bool:
        return _SOURCES[self.name].synthetic

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}:{self.path}"


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``NAME`` or ``NAME:PATH`` (see the module docstring for the grammar)."""
    name, sep, path = spec.strip().partition(":")
    name = name.strip()
    if name not in _SOURCES:
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise DataError(f"unknown dataset {name!r} in data spec {spec!r}{hint}; valid: {', '.join(DATASET_NAMES)}")
    source = _SOURCES[name]
    if source.synthetic:
        if sep:
            raise DataError(f"data spec {spec!r}: {name} is generated and takes no ':PATH'")
        return DataSpec(name)
    if not path.strip():
        raise DataError(f"data spec {spec!r}: {name} needs a path, {name}:PATH with PATH = {source.path_help}")
    return DataSpec(name, Path(path.strip()).expanduser())


@dataclass(frozen=True)
class TaskData:
    """Datasets for one task, ready for DataLoaders.

    Always set: ``task`` ("reid" | "face" | "fer"), ``spec``, ``root`` (where the data was read
    from: a folder, or the csv for FER), ``num_classes`` (classifier width: training pids,
    training identities, or 7 expressions) and ``train``.

    * reid: ``train``, ``query`` and ``gallery`` yield ``(image float32 (3,H,W), pid, camid)``;
      train pids are relabelled ``0..num_classes-1``; query/gallery keep dataset pids (gallery
      includes pid-0 distractors) and expose ``.pids``/``.camids`` arrays for the metrics.
      Evaluate with the same-pid-same-camera gallery removal rule.
    * face: ``train`` yields ``(image float32 (3,H,W), label)``; ``verification`` maps a set
      name ("lfw", or a ``.bin`` file's stem) to a Dataset yielding ``(image, index)`` where
      images ``2i``/``2i+1`` are pair ``i`` and the dataset's ``.issame`` bool array (and
      ``.num_folds``) describe the pairs.
    * fer: ``train`` (Training), ``val`` (PublicTest), ``test`` (PrivateTest) yield
      ``(image float32 (1,H,W), label 0..6)``.

    Only ``train`` is augmented (and only when built with ``augment=True``).
    """

    task: str
    spec: DataSpec
    root: Path
    num_classes: int
    train: Dataset
    query: ReIDDataset | None = None
    gallery: ReIDDataset | None = None
    verification: dict[str, VerificationDataset] = field(default_factory=dict)
    val: Dataset | None = None
    test: Dataset | None = None


def _build_reid(spec: DataSpec, root: Path, input_size: tuple[int, int], augment: bool, verify: bool) -> TaskData:
    from strabench.data.datasets import ReIDDataset
    from strabench.data.market1501 import load_market1501
    from strabench.data.transforms import reid_transform

    splits = load_market1501(root, verify=verify)
    test_tf = reid_transform(input_size, train=False)
    return TaskData(
        task="reid", spec=spec, root=root, num_classes=splits.num_train_pids,
        train=ReIDDataset(splits.train, reid_transform(input_size, train=augment)),
        query=ReIDDataset(splits.query, test_tf), gallery=ReIDDataset(splits.gallery, test_tf),
    )


def _check_folds(pairs: Any, pairs_txt: Path) -> None:
    """Refuse a pairs file with fewer than two folds: the verification protocol picks each fold's
    threshold on the other folds, so one fold can never be evaluated. An LFW "View 1" file
    (pairsDevTrain/pairsDevTest: a single count header) is a development split, not the
    10-fold View 2 protocol the paper's LFW numbers use."""
    if pairs.num_folds < 2:
        raise DataError(
            f"{pairs_txt}: has {pairs.num_folds} fold (a single-count header is LFW View 1, the development "
            "split); evaluation needs the k-fold View 2 protocol: use LFW's pairs.txt (header '10 300')"
        )


def _face_verification_files(root: Path) -> tuple[bool, list[Path]]:
    """Whether ``root`` has LFW ``pairs.txt`` (+ ``lfw/``), and its ``*.bin`` files; DataError if neither."""
    has_pairs = (root / "pairs.txt").is_file()
    if not has_pairs and (root / "lfw").is_dir():
        raise DataError(f"{root / 'pairs.txt'}: missing (needed to evaluate on {root / 'lfw'})")
    bins = sorted(root.glob("*.bin"))
    if not has_pairs and not bins:
        raise DataError(f"{root}: no verification data; expected lfw/ + pairs.txt or *.bin files")
    return has_pairs, bins


def _build_face(spec: DataSpec, root: Path, input_size: tuple[int, int], augment: bool, verify: bool) -> TaskData:
    from strabench.data.datasets import LabelledImageDataset, VerificationDataset
    from strabench.data.identity_folder import load_identity_folder
    from strabench.data.transforms import face_transform
    from strabench.data.verification import load_face_bin, load_lfw_pairs

    if not root.is_dir():
        raise DataError(f"{root}: face data folder is missing")
    items = load_identity_folder(root / "train", verify=verify)
    has_pairs, bins = _face_verification_files(root)
    sets = [load_lfw_pairs(root / "pairs.txt", root / "lfw", verify=verify)] if has_pairs else []
    for pairs in sets:
        _check_folds(pairs, root / "pairs.txt")
    sets += [load_face_bin(p, verify=verify) for p in bins]
    test_tf = face_transform(input_size, train=False)
    verification: dict[str, VerificationDataset] = {}
    for pairs in sets:
        if pairs.name in verification:
            raise DataError(f"{root}: two verification sets are named {pairs.name!r} (pairs.txt and {pairs.name}.bin)")
        verification[pairs.name] = VerificationDataset(pairs, test_tf)
    return TaskData(
        task="face", spec=spec, root=root, num_classes=1 + max(label for _, label in items),
        train=LabelledImageDataset(items, face_transform(input_size, train=augment)), verification=verification,
    )


def _build_fer(spec: DataSpec, root: Path, input_size: tuple[int, int], augment: bool, verify: bool) -> TaskData:
    from strabench.data.datasets import ArrayImageDataset
    from strabench.data.fer2013 import CLASS_NAMES, load_fer2013
    from strabench.data.transforms import fer_transform

    splits = load_fer2013(root)
    for usage, split in splits.items():
        if len(split) == 0:
            raise DataError(f"{root}: no rows with Usage {usage}")
    test_tf = fer_transform(input_size, train=False)

    def ds(usage: str, tf: Any) -> ArrayImageDataset:
        return ArrayImageDataset(splits[usage].images, splits[usage].labels, tf)

    return TaskData(
        task="fer", spec=spec, root=root, num_classes=len(CLASS_NAMES),
        train=ds("Training", fer_transform(input_size, train=augment)),
        val=ds("PublicTest", test_tf), test=ds("PrivateTest", test_tf),
    )


_BUILDERS: dict[str, Callable[[DataSpec, Path, tuple[int, int], bool, bool], TaskData]] = {
    "reid": _build_reid, "face": _build_face, "fer": _build_fer,
}


def _check_reid_layout(root: Path) -> None:
    from strabench.data.images import decode_sample
    from strabench.data.market1501 import load_market1501

    splits = load_market1501(root, verify=False)  # folders and every file name
    for records in (splits.train, splits.query, splits.gallery):
        decode_sample(r.path for r in records)


def _check_face_layout(root: Path) -> None:
    from strabench.data.identity_folder import load_identity_folder
    from strabench.data.images import decode_sample
    from strabench.data.verification import load_lfw_pairs

    if not root.is_dir():
        raise DataError(f"{root}: face data folder is missing")
    decode_sample(path for path, _label in load_identity_folder(root / "train", verify=False))
    has_pairs, _bins = _face_verification_files(root)  # .bin contents are checked when loaded
    if has_pairs:
        pairs = load_lfw_pairs(root / "pairs.txt", root / "lfw", verify=False)  # the pairs and that their images exist
        _check_folds(pairs, root / "pairs.txt")
        decode_sample(p for p in pairs.images if isinstance(p, Path))


def _check_fer_layout(path: Path) -> None:
    from strabench.data.fer2013 import check_fer2013

    check_fer2013(path)


_LAYOUT_CHECKS: dict[str, Callable[[Path], None]] = {
    "reid": _check_reid_layout, "face": _check_face_layout, "fer": _check_fer_layout,
}


def check_data(spec: str | DataSpec, task: str) -> DataSpec:
    """Refuse a real dataset whose folders, file names, images or csv rows are wrong, in bounded time.

    A suite checks its data before its first run and ``strabench train`` before it announces a
    run, so a folder that is not the dataset is one error up front instead of a failure in
    every run. Uses the loaders' own checks (same messages). Bounds: every file name and every
    LFW pairs line is read, every FER2013 csv row is parsed (~35k rows, a few seconds), every
    image is ``stat``-ed and at most ``strabench.data.images.DECODE_SAMPLE`` images per split
    are decoded; a face ``.bin`` is not unpickled here. A corrupt image outside the sample is
    still found when a run reads it. Synthetic specs pass (they are generated; their sizes are
    checked by ``strabench.train.config.resolve``).
    """
    parsed = parse_data_spec(spec) if isinstance(spec, str) else spec
    if task not in _LAYOUT_CHECKS:
        raise ConfigError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if parsed.task != task:
        raise DataError(f"dataset {parsed} is for task {parsed.task!r}, not {task!r}")
    if not parsed.synthetic:
        assert parsed.path is not None
        _LAYOUT_CHECKS[task](parsed.path)
    return parsed


def check_synthetic_sizes(spec: str | DataSpec, sizes: Mapping[str, Any]) -> None:
    """Refuse now the ``data_sizes`` a synthetic generator would refuse when a run starts:
    unknown names, non-integers (a date, inf, 2.5), values below the generator's floor.

    Uses the generator's own check (``strabench.data.synthetic``), so the rules cannot drift;
    nothing is generated. A ConfigError names the size and its value.
    """
    from strabench.data.synthetic import _generator, _resolve_sizes

    parsed = parse_data_spec(spec) if isinstance(spec, str) else spec
    if not parsed.synthetic:
        if sizes:
            raise ConfigError(f"dataset sizes {dict(sizes)} only apply to synthetic datasets, not {parsed}")
        return
    _resolve_sizes(_generator(parsed.name).sizes, parsed.name, sizes)


def build_task_data(
    spec: str | DataSpec,
    task: str,
    *,
    input_size: tuple[int, int],
    augment: bool = True,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    sizes: Mapping[str, int] | None = None,
    verify: bool = False,
) -> TaskData:
    """Resolve ``spec`` (generating synthetic data into the cache if needed) and build ``task``'s Datasets.

    ``input_size`` is ``(height, width)`` of the tensors the model sees. ``augment=False``
    gives the training set the test transform. ``seed`` and ``sizes`` (see ``ReIDSizes``,
    ``FaceSizes``, ``ExpressionSizes`` in :mod:`strabench.data.synthetic`) pick the synthetic
    dataset; they are errors for real datasets. ``verify=True`` decodes every image up front.
    """
    from strabench.data.synthetic import ensure_dataset
    from strabench.data.transforms import check_input_size

    parsed = parse_data_spec(spec) if isinstance(spec, str) else spec
    if task not in _BUILDERS:
        raise ConfigError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if parsed.task != task:
        raise DataError(f"dataset {parsed} is for task {parsed.task!r}, not {task!r}")
    size = check_input_size(input_size)
    if parsed.synthetic:
        root = ensure_dataset(parsed.name, seed=seed, cache_dir=cache_dir, **dict(sizes or {}))
    else:
        if sizes:
            raise ConfigError(f"dataset sizes {dict(sizes)} only apply to synthetic datasets, not {parsed}")
        assert parsed.path is not None
        root = parsed.path
    return _BUILDERS[task](parsed, root, size, augment, verify)

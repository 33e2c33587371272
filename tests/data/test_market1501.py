"""load_market1501: torchreid's rules on generated data, and one-line errors on broken trees."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from strabench.data.market1501 import FOLDERS, ReIDRecord, load_market1501
from strabench.errors import DataError

from .conftest import TINY_REID


def _naive_reference(root: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Slow, obviously-correct re-statement of torchreid's rules (+ pid 0 gallery-only)."""
    out = {}
    for split, folder in FOLDERS.items():
        rows = []
        for p in sorted((root / folder).glob("*.jpg")):
            pid, cam = (int(v) for v in re.search(r"([-\d]+)_c(\d)", p.name).groups())
            if pid == -1 or (pid == 0 and split != "gallery"):
                continue
            rows.append((p.name, pid, cam - 1))
        out[split] = rows
    train_pids = sorted({pid for _, pid, _ in out["train"]})
    out["train"] = [(n, train_pids.index(pid), cam) for n, pid, cam in out["train"]]
    return out


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "market"))


def test_loader_matches_reference_rules(reid_root: Path) -> None:
    splits = load_market1501(reid_root)
    ref = _naive_reference(reid_root)
    for split in ("train", "query", "gallery"):
        got = [(r.path.name, r.pid, r.camid) for r in getattr(splits, split)]
        assert got == ref[split], split
    assert splits.num_train_pids == TINY_REID["num_train_ids"]
    assert sorted({r.pid for r in splits.train}) == list(range(splits.num_train_pids))  # contiguous
    assert all(0 <= r.camid <= 5 for r in splits.train + splits.query + splits.gallery)
    assert {r.pid for r in splits.query} <= {r.pid for r in splits.gallery}
    assert sum(r.pid == 0 for r in splits.gallery) == TINY_REID["num_distractors"]
    assert not any(r.pid <= 0 for r in splits.query)
    assert len(splits.gallery) == TINY_REID["num_test_ids"] * TINY_REID["gallery_images_per_id"] + TINY_REID["num_distractors"]
    assert isinstance(splits.train[0], ReIDRecord) and splits.train[0].path.is_file()
    with pytest.raises(AttributeError):
        splits.train[0].pid = 3  # type: ignore[misc]  # frozen


def test_non_jpg_files_are_ignored(reid_root: Path, tmp_path: Path) -> None:
    root = _copy(reid_root, tmp_path)
    (root / "query" / "Thumbs.db").write_bytes(b"junk")  # the real Market-1501 zip ships these
    assert len(load_market1501(root).query) == len(load_market1501(reid_root).query)


def test_missing_root_and_folders(reid_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: Market-1501 root folder is missing"):
        load_market1501(tmp_path / "nowhere")
    root = _copy(reid_root, tmp_path)
    shutil.rmtree(root / "query")
    with pytest.raises(DataError, match=r"market/query: Market-1501 folder is missing"):
        load_market1501(root)


def test_empty_folder(reid_root: Path, tmp_path: Path) -> None:
    root = _copy(reid_root, tmp_path)
    for p in (root / "bounding_box_test").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"bounding_box_test: folder holds no \.jpg images"):
        load_market1501(root)


def test_folder_with_only_junk(reid_root: Path, tmp_path: Path) -> None:
    root = _copy(reid_root, tmp_path)
    for p in (root / "query").iterdir():
        p.rename(p.with_name("-1" + p.name[4:]))
    with pytest.raises(DataError, match=r"query: no usable images"):
        load_market1501(root)


@pytest.mark.parametrize("name, problem", [
    ("person_0001.jpg", "does not match Market-1501's"),
    ("0001c1s1_000001_00.jpg", "does not match Market-1501's"),
    ("1-2_c1s1_000001_00.jpg", "malformed person id '1-2'"),
    ("-2_c1s1_000001_00.jpg", "person id -2 is negative"),
    ("0001_c0s1_000001_00.jpg", "camera c0 is not valid"),
])
def test_wrong_file_names_name_the_file(name: str, problem: str, reid_root: Path, tmp_path: Path) -> None:
    root = _copy(reid_root, tmp_path)
    shutil.copy(next((root / "query").iterdir()), root / "bounding_box_train" / name)
    with pytest.raises(DataError) as info:
        load_market1501(root)
    message = str(info.value)
    assert name in message and problem in message and "\n" not in message


def test_corrupt_and_truncated_images_are_caught_by_verify(reid_root: Path, tmp_path: Path) -> None:
    root = _copy(reid_root, tmp_path)
    load_market1501(root, verify=True)  # clean data passes the full decode
    victim = sorted((root / "bounding_box_test").glob("0*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated mid-scan
    load_market1501(root)  # without verify only names are read
    with pytest.raises(DataError, match=re.escape(victim.name) + r": unreadable or corrupt image"):
        load_market1501(root, verify=True)
    victim.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(DataError, match=re.escape(victim.name) + r": unreadable or corrupt image"):
        load_market1501(root, verify=True)

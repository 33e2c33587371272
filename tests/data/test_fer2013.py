"""load_fer2013: agrees with a naive parser, and every malformed row is an error naming file:line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from strabench.data.fer2013 import USAGES, load_fer2013
from strabench.errors import DataError

from .conftest import TINY_FER

PIXELS = " ".join(["7"] * 2304)


def test_matches_naive_parser(fer_csv: Path) -> None:
    splits = load_fer2013(fer_csv)
    with open(fer_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for usage in USAGES:
        mine = [r for r in rows if r["Usage"] == usage]
        ref_images = np.array([[int(v) for v in r["pixels"].split(" ")] for r in mine], dtype=np.uint8).reshape(-1, 48, 48)
        ref_labels = np.array([int(r["emotion"]) for r in mine])
        assert splits[usage].images.dtype == np.uint8 and splits[usage].labels.dtype == np.int64
        np.testing.assert_array_equal(splits[usage].images, ref_images)
        np.testing.assert_array_equal(splits[usage].labels, ref_labels)
    assert len(splits["Training"]) == TINY_FER["num_train"]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_column_order_and_missing_splits_are_fine(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", ["Usage, emotion ,pixels", f"Training,3,{PIXELS}"])
    splits = load_fer2013(path)
    assert splits["Training"].labels.tolist() == [3] and splits["Training"].images[0, 5, 5] == 7
    assert splits["PrivateTest"].images.shape == (0, 48, 48) and splits["PrivateTest"].labels.shape == (0,)


@pytest.mark.parametrize("lines, problem", [
    (["emotion,pixels", f"0,{PIXELS}"], r"f\.csv:1: columns are emotion,pixels; expected emotion,pixels,Usage"),
    (["emotion,pixels,Usage,extra", f"0,{PIXELS},Training,x"], r"f\.csv:1: columns are"),
    (["emotion,pixels,Usage", f"0,{PIXELS},Training", f"0,{PIXELS} 7,Training"], r"f\.csv:3: 2305 pixels; expected 2304"),
    (["emotion,pixels,Usage", "0,1 2 3,Training"], r"f\.csv:2: 3 pixels; expected 2304"),
    (["emotion,pixels,Usage", f"7,{PIXELS},Training"], r"f\.csv:2: emotion 7 is outside 0\.\.6"),
    (["emotion,pixels,Usage", f"-1,{PIXELS},Training"], r"f\.csv:2: emotion -1 is outside"),
    (["emotion,pixels,Usage", f"happy,{PIXELS},Training"], r"f\.csv:2: emotion 'happy' is not an integer"),
    (["emotion,pixels,Usage", f"0,{PIXELS},Validation"], r"f\.csv:2: Usage 'Validation' is not one of"),
    (["emotion,pixels,Usage", f"0,{PIXELS[:-1]}x,Training"], r"f\.csv:2: pixels contain a non-integer"),
    (["emotion,pixels,Usage", f"0,{PIXELS[:-1]}256,Training"], r"f\.csv:2: pixel values outside 0\.\.255"),
    (["emotion,pixels,Usage", f"0,{PIXELS}"], r"f\.csv:2: 2 fields; expected 3"),
    (["emotion,pixels,Usage"], r"f\.csv: csv has a header but no data rows"),
])
def test_malformed_rows(lines: list[str], problem: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=problem) as info:
        load_fer2013(_write(tmp_path / "f.csv", lines))
    assert "\n" not in str(info.value)


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: FER2013 csv file is missing"):
        load_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        load_fer2013(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xd8\xff\xe0 not text")
    with pytest.raises(DataError, match=r"bin\.csv: not a text csv"):
        load_fer2013(tmp_path / "bin.csv")

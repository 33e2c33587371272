"""LFW pairs, insightface .bin (incl. malicious pickles) and identity-folder loaders."""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from strabench.data.identity_folder import load_identity_folder
from strabench.data.images import open_image
from strabench.data.verification import load_face_bin, load_lfw_pairs, write_face_bin
from strabench.errors import DataError

from .conftest import TINY_FACES


# ------------------------------------------------------------------------------------ LFW
def test_lfw_pairs_on_generated_data(faces_root: Path) -> None:
    pairs = load_lfw_pairs(faces_root / "pairs.txt", faces_root / "lfw")
    per_fold, folds = TINY_FACES["pairs_per_fold"], TINY_FACES["num_folds"]
    assert len(pairs) == 2 * per_fold * folds and len(pairs.images) == 2 * len(pairs)
    assert pairs.num_folds == folds and pairs.name == "lfw" and pairs.issame.dtype == bool
    assert pairs.issame.tolist() == ([True] * per_fold + [False] * per_fold) * folds
    lines = (faces_root / "pairs.txt").read_text().split("\n")[1:]
    for i, tokens in enumerate(line.split() for line in lines if line):
        a, b = pairs.images[2 * i], pairs.images[2 * i + 1]
        if len(tokens) == 3:
            assert a == faces_root / "lfw" / tokens[0] / f"{tokens[0]}_{int(tokens[1]):04d}.jpg"
            assert a.parent == b.parent and a != b
        else:
            assert (a.parent.name, b.parent.name) == (tokens[0], tokens[2])


def _pairs(tmp_path: Path, faces_root: Path, text: str) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize("mutate, problem", [
    (lambda lines: ["ten 300", *lines[1:]], r"pairs\.txt:1: header 'ten 300' is not '<folds> <pairs per fold>'"),
    (lambda lines: ["2 2 2", *lines[1:]], r"pairs\.txt:1: header"),
    (lambda lines: lines[:-1], r"pairs\.txt: header promises 2 folds x 2 matched \+ 2 mismatched = 8 pairs, found 7"),
    (lambda lines: [*lines[:2], "OnlyAName", *lines[3:]], r"pairs\.txt:3: expected 'Name n1 n2' or 'Name1 n1 Name2 n2', got 'OnlyAName'"),
    (lambda lines: [*lines[:2], "Some_One one two", *lines[3:]], r"pairs\.txt:3: expected"),
    (lambda lines: [*lines[:2], "Some_One 1 2 3 4 5", *lines[3:]], r"pairs\.txt:3: expected"),
    (lambda lines: [*lines[:2], lines[2].split("\t")[0] + "\t0\t1", *lines[3:]], r"pairs\.txt:3: image number 0 must be >= 1"),
    (lambda lines: [*lines[:2], "Nobody_Here\t1\t2", *lines[3:]], r"Nobody_Here_0001\.jpg: image named by pairs\.txt line 3 is missing"),
    (lambda lines: [], r"pairs\.txt: file is empty"),
])
def test_malformed_pairs_txt(mutate, problem: str, faces_root: Path, tmp_path: Path) -> None:
    lines = (faces_root / "pairs.txt").read_text().splitlines()
    path = _pairs(tmp_path, faces_root, "\n".join(mutate(lines)) + "\n")
    with pytest.raises(DataError, match=problem) as info:
        load_lfw_pairs(path, faces_root / "lfw")
    assert "\n" not in str(info.value)


def test_lfw_missing_files_and_corrupt_image(faces_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.txt: LFW pairs file is missing"):
        load_lfw_pairs(tmp_path / "nope.txt", faces_root / "lfw")
    with pytest.raises(DataError, match=r"nolfw: LFW image folder is missing"):
        load_lfw_pairs(faces_root / "pairs.txt", tmp_path / "nolfw")
    root = Path(shutil.copytree(faces_root, tmp_path / "faces"))
    victim = load_lfw_pairs(root / "pairs.txt", root / "lfw").images[0]
    victim.write_bytes(victim.read_bytes()[:300])
    load_lfw_pairs(root / "pairs.txt", root / "lfw")  # names only
    with pytest.raises(DataError, match=victim.name + r": unreadable or corrupt image"):
        load_lfw_pairs(root / "pairs.txt", root / "lfw", verify=True)


def test_single_number_header_is_one_fold(faces_root: Path, tmp_path: Path) -> None:
    lines = (faces_root / "pairs.txt").read_text().splitlines()
    body = lines[1:3] + lines[3:5]  # fold 0: 2 matched, 2 mismatched
    pairs = load_lfw_pairs(_pairs(tmp_path, faces_root, "\n".join(["2", *body]) + "\n"), faces_root / "lfw")
    assert pairs.num_folds == 1 and pairs.issame.tolist() == [True, True, False, False]


# ----------------------------------------------------------------------------------- .bin
def _some_jpegs(faces_root: Path, n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((faces_root / "lfw").rglob("*.jpg"))[:n]]


def test_bin_round_trip(faces_root: Path, tmp_path: Path) -> None:
    jpegs = _some_jpegs(faces_root, 6)
    write_face_bin(tmp_path / "cfp_fp.bin", jpegs, [True, False, True])
    loaded = load_face_bin(tmp_path / "cfp_fp.bin", verify=True)
    assert loaded.name == "cfp_fp" and loaded.images == jpegs and loaded.num_folds == 10
    assert loaded.issame.tolist() == [True, False, True] and loaded.issame.dtype == bool
    assert open_image(loaded.images[0]).size == (112, 112)


def test_python2_style_bin_loads(faces_root: Path, tmp_path: Path) -> None:
    """insightface's own .bin files are protocol-2 pickles of Python-2 ``str``: SHORT_BINSTRING opcodes."""
    jpegs = _some_jpegs(faces_root, 2)
    # handcrafted protocol 2: PROTO 2, ( [ BINSTRING.. ] [ NEWTRUE ] ) TUPLE2 STOP
    def binstring(b: bytes) -> bytes:
        return b"T" + len(b).to_bytes(4, "little") + b
    payload = (b"\x80\x02" + b"]" + b"(" + b"".join(binstring(j) for j in jpegs) + b"e"
               + b"]" + b"\x88" + b"a" + b"\x86" + b".")
    (tmp_path / "lfw.bin").write_bytes(payload)
    loaded = load_face_bin(tmp_path / "lfw.bin")
    assert loaded.images == jpegs and loaded.issame.tolist() == [True]


class _Evil:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_and_never_runs(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(([_Evil(marker)], [True]), protocol=protocol)
    # the payload is real: a plain pickle.loads would run the command
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control), protocol=protocol))
    assert control.exists()
    (tmp_path / "evil.bin").write_bytes(payload)
    with pytest.raises(DataError, match=r"evil\.bin: refused: pickle tries to load global (posix|os|nt)\.system"):
        load_face_bin(tmp_path / "evil.bin")
    assert not marker.exists()


def test_eval_and_builtins_are_refused_too(tmp_path: Path) -> None:
    class EvalEvil:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()",))

    (tmp_path / "e.bin").write_bytes(pickle.dumps((EvalEvil(), [True])))
    with pytest.raises(DataError, match=r"refused: pickle tries to load global builtins\.eval"):
        load_face_bin(tmp_path / "e.bin")
    (tmp_path / "c.bin").write_bytes(pickle.dumps(([b"a", b"b"], [complex(1, 2)]), protocol=4))
    with pytest.raises(DataError, match=r"refused: pickle tries to load global builtins\.complex"):
        load_face_bin(tmp_path / "c.bin")


def test_numpy_pickled_bins_are_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "np.bin").write_bytes(pickle.dumps(([np.zeros(3, np.uint8)] * 2, [True])))
    with pytest.raises(DataError, match=r"np\.bin: refused: pickle tries to load global numpy.*numpy-pickled bins are not supported"):
        load_face_bin(tmp_path / "np.bin")


@pytest.mark.parametrize("obj, problem", [
    ([b"\xff\xd8"] * 2, r"expected a pickled \(bins, issame_list\) pair, got list of length 2|bins and issame_list must be lists"),
    (([b"\xff\xd8"] * 2, [True], [1]), r"expected a pickled \(bins, issame_list\) pair, got tuple of length 3"),
    ("just a string", r"expected a pickled \(bins, issame_list\) pair, got str"),
    ((b"\xff\xd8", [True]), r"bins and issame_list must be lists, got bytes and list"),
    (([b"\xff\xd8"] * 3, [True]), r"3 images for 1 pairs; expected 2"),
    (([b"\xff\xd8"] * 2, []), r"issame_list is empty"),
    (([b"\xff\xd8"] * 2, ["yes"]), r"issame_list\[0\] is str 'yes', not a bool"),
    (([b"\xff\xd8", "text"], [True]), r"bins\[1\] is str, not encoded image bytes"),
    (([b"\xff\xd8", b"GIF89a"], [True]), r"bins\[1\] is not a JPEG or PNG image"),
])
def test_wrong_bin_structure(obj: object, problem: str, tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(DataError, match=r"x\.bin: .*(" + problem + ")") as info:
        load_face_bin(tmp_path / "x.bin")
    assert "\n" not in str(info.value)


def test_garbage_truncated_and_missing_bins(faces_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"none\.bin: verification \.bin file is missing"):
        load_face_bin(tmp_path / "none.bin")
    (tmp_path / "g.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match=r"g\.bin: not a valid pickle"):
        load_face_bin(tmp_path / "g.bin")
    write_face_bin(tmp_path / "t.bin", _some_jpegs(faces_root, 2), [False])
    data = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t\.bin: not a valid pickle"):
        load_face_bin(tmp_path / "t.bin")


def test_bin_with_corrupt_image_fails_verify(faces_root: Path, tmp_path: Path) -> None:
    jpegs = _some_jpegs(faces_root, 2)
    write_face_bin(tmp_path / "c.bin", [jpegs[0], jpegs[1][:200]], [True])
    load_face_bin(tmp_path / "c.bin")
    with pytest.raises(DataError, match=r"c\.bin\[1\]: unreadable or corrupt image"):
        load_face_bin(tmp_path / "c.bin", verify=True)


# ------------------------------------------------------------------------ identity folder
def test_identity_folder_labels_follow_sorted_names(faces_root: Path) -> None:
    items = load_identity_folder(faces_root / "train", verify=True)
    assert len(items) == TINY_FACES["num_train_ids"] * TINY_FACES["images_per_train_id"]
    names = sorted(p.name for p in (faces_root / "train").iterdir())
    assert all(path.parent.name == names[label] for path, label in items)
    assert sorted({label for _, label in items}) == list(range(len(names)))


def test_identity_folder_errors(faces_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent: identity folder root is missing"):
        load_identity_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no identity sub-folders$"):
        load_identity_folder(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next((faces_root / "train" / "0000000").iterdir()), flat / "a.jpg")
    with pytest.raises(DataError, match=r"flat: no identity sub-folders; it holds images directly"):
        load_identity_folder(flat)
    root = Path(shutil.copytree(faces_root / "train", tmp_path / "train"))
    (root / "0000009").mkdir()
    (root / "0000009" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"0000009: identity folder holds no images"):
        load_identity_folder(root)
    shutil.rmtree(root / "0000009")
    victim = root / "0000001" / "001.jpg"
    victim.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"001\.jpg: unreadable or corrupt image"):
        load_identity_folder(root, verify=True)

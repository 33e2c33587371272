"""parse_data_spec / build_task_data: the engine's single door to the data."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from strabench.data import build_task_data, parse_data_spec
from strabench.data.tasks import DATASET_NAMES, DataSpec
from strabench.data.images import open_image
from strabench.data.verification import write_face_bin
from strabench.errors import ConfigError, DataError

from .conftest import TINY_FACES, TINY_FER, TINY_REID


# ---------------------------------------------------------------------------- spec parsing
@pytest.mark.parametrize("spec, expected", [
    ("synthetic_reid", DataSpec("synthetic_reid")),
    (" synthetic_expressions ", DataSpec("synthetic_expressions")),
    ("market1501:/data/Market-1501-v15.09.15", DataSpec("market1501", Path("/data/Market-1501-v15.09.15"))),
    ("fer2013:rel/fer2013.csv", DataSpec("fer2013", Path("rel/fer2013.csv"))),
    ("faces:/data/faces", DataSpec("faces", Path("/data/faces"))),
])
def test_parse_valid_specs(spec: str, expected: DataSpec) -> None:
    assert parse_data_spec(spec) == expected
    assert parse_data_spec(str(expected)) == expected  # str() round-trips


def test_parse_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_data_spec("market1501:~/m").path == tmp_path / "m"


def test_parse_tasks() -> None:
    assert [parse_data_spec(n if n.startswith("synthetic") else f"{n}:x").task for n in DATASET_NAMES] == \
        ["reid", "face", "fer", "reid", "face", "fer"]


@pytest.mark.parametrize("spec, problem", [
    ("imagenet", r"unknown dataset 'imagenet'.*valid: synthetic_reid, synthetic_faces, synthetic_expressions, market1501, faces, fer2013"),
    ("market1502:/x", r"unknown dataset 'market1502'.*did you mean market1501\?"),
    ("synthetic_reid:/x", r"synthetic_reid is generated and takes no ':PATH'"),
    ("market1501", r"market1501 needs a path, market1501:PATH with PATH = the Market-1501 root folder"),
    ("fer2013:  ", r"fer2013 needs a path"),
    ("", r"unknown dataset ''"),
])
def test_parse_errors(spec: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        parse_data_spec(spec)


# ------------------------------------------------------------------------------ building
def test_reid_task_data(tmp_path: Path) -> None:
    data = build_task_data("synthetic_reid", "reid", input_size=(64, 32), seed=3, cache_dir=tmp_path, sizes=TINY_REID)
    assert data.task == "reid" and data.num_classes == TINY_REID["num_train_ids"]
    assert data.root.parent == tmp_path and data.spec == DataSpec("synthetic_reid")
    assert len(data.train) == TINY_REID["num_train_ids"] * TINY_REID["train_images_per_id"]
    assert len(data.query) == TINY_REID["num_test_ids"] * TINY_REID["query_cams_per_id"]
    img, pid, camid = data.train[0]
    assert img.shape == (3, 64, 32) and img.dtype == torch.float32 and isinstance(pid, int) and isinstance(camid, int)
    assert 0 <= pid < data.num_classes
    qimg, qpid, qcam = data.query[0]
    assert qimg.shape == (3, 64, 32) and qpid == int(data.query.pids[0]) and qcam == int(data.query.camids[0])
    assert (data.gallery.pids == 0).sum() == TINY_REID["num_distractors"]
    assert data.verification == {} and data.val is None and data.test is None
    imgs, pids, camids = next(iter(DataLoader(data.train, batch_size=4, shuffle=False)))
    assert imgs.shape == (4, 3, 64, 32) and pids.dtype == torch.int64 and camids.shape == (4,)
    # test-time images are deterministic; training ones are augmented
    assert torch.equal(data.query[0][0], data.query[0][0])
    # same spec + seed + sizes: the cached dataset is reused
    again = build_task_data("synthetic_reid", "reid", input_size=(64, 32), seed=3, cache_dir=tmp_path, sizes=TINY_REID)
    assert again.root == data.root and len(list(tmp_path.iterdir())) == 1


def test_augment_false_gives_train_the_test_transform(tmp_path: Path) -> None:
    data = build_task_data("synthetic_reid", "reid", input_size=(64, 32), seed=3, cache_dir=tmp_path,
                           sizes=TINY_REID, augment=False)
    torch.manual_seed(0)
    a = data.train[0][0]
    torch.manual_seed(1)
    assert torch.equal(a, data.train[0][0])


def test_face_task_data_with_lfw_and_bin(faces_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(faces_root, tmp_path / "faces"))
    jpegs = [p.read_bytes() for p in sorted((root / "lfw").rglob("*.jpg"))[:4]]
    write_face_bin(root / "agedb_30.bin", jpegs, [True, False])
    data = build_task_data(f"faces:{root}", "face", input_size=(112, 112))
    assert data.num_classes == TINY_FACES["num_train_ids"] and sorted(data.verification) == ["agedb_30", "lfw"]
    img, label = data.train[0]
    assert img.shape == (3, 112, 112) and img.dtype == torch.float32 and label == 0
    assert -1.0 <= float(img.min()) and float(img.max()) <= 1.0
    lfw = data.verification["lfw"]
    assert len(lfw) == 2 * len(lfw.issame) and lfw.num_folds == TINY_FACES["num_folds"]
    vimg, index = lfw[5]
    assert vimg.shape == (3, 112, 112) and index == 5
    binset = data.verification["agedb_30"]
    assert binset.issame.tolist() == [True, False] and binset[3][0].shape == (3, 112, 112)
    # rows come back in file order, decoded and normalised like the LFW images
    for i in range(4):
        assert torch.equal(binset[i][0], lfw.transform(open_image(jpegs[i])))


def test_face_task_data_on_synthetic(tmp_path: Path) -> None:
    data = build_task_data("synthetic_faces", "face", input_size=(96, 96), seed=3, cache_dir=tmp_path, sizes=TINY_FACES)
    assert list(data.verification) == ["lfw"] and data.train[0][0].shape == (3, 96, 96)


def test_fer_task_data(tmp_path: Path) -> None:
    data = build_task_data("synthetic_expressions", "fer", input_size=(44, 44), seed=3, cache_dir=tmp_path, sizes=TINY_FER)
    assert data.num_classes == 7 and data.root.name == "fer2013.csv"
    assert (len(data.train), len(data.val), len(data.test)) == (TINY_FER["num_train"], TINY_FER["num_public_test"],
                                                               TINY_FER["num_private_test"])
    img, label = data.val[0]
    assert img.shape == (1, 44, 44) and img.dtype == torch.float32 and 0 <= label < 7
    assert -1.0 <= float(img.min()) and float(img.max()) <= 1.0
    batch, labels = next(iter(DataLoader(data.train, batch_size=7)))
    assert batch.shape == (7, 1, 44, 44) and labels.dtype == torch.int64
    np.testing.assert_array_equal(np.sort(data.train.labels), np.repeat(np.arange(7), 2))


def test_corrupt_image_fails_when_item_is_loaded(reid_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(reid_root, tmp_path / "market"))
    data = build_task_data(f"market1501:{root}", "reid", input_size=(128, 64))
    victim = data.train.records[2].path
    victim.write_bytes(victim.read_bytes()[:400])
    data.train[1]
    with pytest.raises(DataError, match=victim.name + r": unreadable or corrupt image"):
        data.train[2]
    with pytest.raises(DataError, match=victim.name):
        build_task_data(f"market1501:{root}", "reid", input_size=(128, 64), verify=True)


# -------------------------------------------------------------------------------- errors
def test_task_mismatch_and_bad_arguments(tmp_path: Path, fer_csv: Path) -> None:
    with pytest.raises(DataError, match=r"dataset fer2013:.* is for task 'fer', not 'reid'"):
        build_task_data(f"fer2013:{fer_csv}", "reid", input_size=(44, 44))
    with pytest.raises(ConfigError, match=r"unknown task 'detection'; valid: reid, face, fer"):
        build_task_data("synthetic_reid", "detection", input_size=(64, 32))
    with pytest.raises(ConfigError, match=r"only apply to synthetic datasets"):
        build_task_data(f"fer2013:{fer_csv}", "fer", input_size=(44, 44), sizes={"num_train": 7})
    with pytest.raises(ConfigError, match=r"input_size"):
        build_task_data(f"fer2013:{fer_csv}", "fer", input_size=(44,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown size 'num_ids'"):
        build_task_data("synthetic_reid", "reid", input_size=(64, 32), cache_dir=tmp_path, sizes={"num_ids": 2})


def test_real_dataset_paths_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"m1501: Market-1501 root folder is missing"):
        build_task_data(f"market1501:{tmp_path / 'm1501'}", "reid", input_size=(128, 64))
    with pytest.raises(DataError, match=r"fer\.csv: FER2013 csv file is missing"):
        build_task_data(f"fer2013:{tmp_path / 'fer.csv'}", "fer", input_size=(44, 44))
    with pytest.raises(DataError, match=r"nofaces: face data folder is missing"):
        build_task_data(f"faces:{tmp_path / 'nofaces'}", "face", input_size=(112, 112))


def test_face_folder_without_verification_data(faces_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(faces_root, tmp_path / "faces"))
    (root / "pairs.txt").unlink()
    with pytest.raises(DataError, match=r"pairs\.txt: missing \(needed to evaluate on .*lfw\)"):
        build_task_data(f"faces:{root}", "face", input_size=(112, 112))
    shutil.rmtree(root / "lfw")
    with pytest.raises(DataError, match=r"faces: no verification data; expected lfw/ \+ pairs\.txt or \*\.bin files"):
        build_task_data(f"faces:{root}", "face", input_size=(112, 112))
    shutil.rmtree(root / "train")
    with pytest.raises(DataError, match=r"faces/train: identity folder root is missing"):
        build_task_data(f"faces:{root}", "face", input_size=(112, 112))


def test_fer_csv_missing_a_split(tmp_path: Path) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + f"0,{' '.join(['1'] * 2304)},Training\n"
                    + f"1,{' '.join(['1'] * 2304)},PublicTest\n")
    with pytest.raises(DataError, match=r"fer2013\.csv: no rows with Usage PrivateTest"):
        build_task_data(f"fer2013:{path}", "fer", input_size=(44, 44))


def test_datasets_pickle_for_worker_processes(tmp_path: Path) -> None:
    data = build_task_data("synthetic_expressions", "fer", input_size=(44, 44), seed=3, cache_dir=tmp_path, sizes=TINY_FER)
    clone = pickle.loads(pickle.dumps(data.train))
    torch.manual_seed(0)
    a = clone[3][0]
    torch.manual_seed(0)
    assert torch.equal(a, data.train[3][0])


def test_importing_the_data_package_does_not_import_torch() -> None:
    code = ("import sys, strabench.data, strabench.data.tasks, strabench.data.synthetic, strabench.data.market1501, "
            "strabench.data.fer2013, strabench.data.verification, strabench.data.identity_folder; "
            "strabench.data.parse_data_spec('synthetic_reid'); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- check_data
def _market_broken(root: Path, how: str) -> Path:
    if how == "empty_root":
        shutil.rmtree(root)
        root.mkdir()
    elif how == "no_query":
        shutil.rmtree(root / "query")
    elif how == "wrong_names":
        victim = sorted((root / "bounding_box_train").iterdir())[0]
        victim.rename(victim.with_name("person-one.jpg"))
    elif how == "only_junk":
        for path in (root / "bounding_box_test").iterdir():
            path.rename(path.with_name("-1" + path.name[path.name.index("_"):]))
    return root


@pytest.mark.parametrize("how", ["empty_root", "no_query", "wrong_names", "only_junk"])
def test_check_data_refuses_a_broken_market_layout_as_the_loader_does(reid_root: Path, tmp_path: Path, how: str) -> None:
    from strabench.data import check_data

    root = _market_broken(Path(shutil.copytree(reid_root, tmp_path / "market")), how)
    with pytest.raises(DataError) as loader:
        build_task_data(f"market1501:{root}", "reid", input_size=(128, 64))
    with pytest.raises(DataError) as checked:
        check_data(f"market1501:{root}", "reid")
    assert str(checked.value) == str(loader.value)


def test_check_data_refuses_broken_face_and_fer_data_as_the_loaders_do(faces_root: Path, tmp_path: Path) -> None:
    from strabench.data import check_data

    root = Path(shutil.copytree(faces_root, tmp_path / "faces"))
    first_pair_image = sorted((root / "lfw").rglob("*.jpg"))[0]
    first_pair_image.unlink()
    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n" + f"0,{' '.join(['1'] * 2303)},Training\n")
    cases = [(f"faces:{root}", "face"), (f"faces:{tmp_path / 'none'}", "face"), (f"fer2013:{fer}", "fer"),
             (f"fer2013:{tmp_path / 'missing.csv'}", "fer")]
    for spec, task in cases:
        with pytest.raises(DataError) as loader:
            build_task_data(spec, task, input_size=(112, 112) if task == "face" else (44, 44))
        with pytest.raises(DataError) as checked:
            check_data(spec, task)
        assert str(checked.value) == str(loader.value), spec


def test_check_data_passes_good_data_decoding_a_bounded_sample(
    reid_root: Path, faces_root: Path, fer_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan-time check decodes at most DECODE_SAMPLE images per split, whatever the size."""
    import PIL.Image

    from strabench.data import check_data
    from strabench.data.images import DECODE_SAMPLE

    opened: list[object] = []
    real_open = PIL.Image.open

    def counting_open(*args: object, **kwargs: object):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    assert check_data(f"market1501:{reid_root}", "reid").path == reid_root
    assert 0 < len(opened) <= 3 * DECODE_SAMPLE  # train, query, gallery
    opened.clear()
    check_data(f"faces:{faces_root}", "face")
    assert 0 < len(opened) <= 2 * DECODE_SAMPLE  # train identities, LFW pairs
    opened.clear()
    check_data(f"fer2013:{fer_csv}", "fer")
    check_data("synthetic_reid", "reid")
    assert opened == []
    with pytest.raises(DataError, match=r"is for task 'fer', not 'reid'"):
        check_data(f"fer2013:{fer_csv}", "reid")


def test_check_data_reads_every_fer_row(tmp_path: Path) -> None:
    """A bad row further down refuses the plan, with the loader's own message."""
    from strabench.data import check_data

    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + f"0,{' '.join(['1'] * 2304)},Training\n" + "9,1 2,Training\n")
    with pytest.raises(DataError, match=r"fer2013\.csv:3: emotion 9") as checked:
        check_data(f"fer2013:{path}", "fer")
    with pytest.raises(DataError) as loader:
        build_task_data(f"fer2013:{path}", "fer", input_size=(44, 44))
    assert str(checked.value) == str(loader.value)


@pytest.mark.parametrize("sizes, problem", [
    ({"num_train_ids": __import__("datetime").date(1979, 5, 27)}, r"num_train_ids=datetime\.date\(1979, 5, 27\) must be an integer"),
    ({"num_train_ids": float("inf")}, r"num_train_ids=inf must be an integer"),
    ({"num_train_ids": 2.5}, r"num_train_ids=2\.5 must be an integer"),
    ({"num_junk": -3}, r"num_junk=-3 must be >= 0"),
    ({"num_trian_ids": 4}, r"unknown size 'num_trian_ids' for dataset synthetic_reid"),
])
def test_check_synthetic_sizes_refuses_what_the_generator_would(sizes: dict, problem: str, tmp_path: Path) -> None:
    from strabench.data import check_synthetic_sizes

    with pytest.raises(ConfigError, match=problem):
        check_synthetic_sizes("synthetic_reid", sizes)
    with pytest.raises(ConfigError, match=problem):  # the reference: generating it
        build_task_data("synthetic_reid", "reid", input_size=(64, 32), cache_dir=tmp_path, sizes=sizes)
    assert not any(tmp_path.iterdir())


def test_check_synthetic_sizes_accepts_good_sizes_and_refuses_sizes_for_real_data() -> None:
    from strabench.data import check_synthetic_sizes

    check_synthetic_sizes("synthetic_reid", TINY_REID)
    check_synthetic_sizes("synthetic_expressions", TINY_FER)
    check_synthetic_sizes("market1501:/x", {})
    with pytest.raises(ConfigError, match=r"only apply to synthetic datasets"):
        check_synthetic_sizes("market1501:/x", {"num_train_ids": 4})

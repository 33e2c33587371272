"""The synthetic generators: real layouts, determinism, real nuisance, and that they discriminate."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from strabench.data.synthetic import (
    EXPRESSION_NAMES,
    generate_synthetic_expressions,
    generate_synthetic_faces,
    generate_synthetic_reid,
)
from strabench.errors import ConfigError, DataError

from .conftest import TINY_FACES, TINY_FER, TINY_REID

MARKET_NAME = re.compile(r"^(-1|\d{4})_c([1-6])s\d_(\d{6})_(\d{2})\.jpg$")


def _market(folder: Path) -> list[tuple[int, int, Path]]:
    out = []
    for p in sorted(folder.iterdir()):
        m = MARKET_NAME.match(p.name)
        assert m, f"bad Market-1501 file name {p.name}"
        out.append((int(m.group(1)), int(m.group(2)), p))
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- layouts
def test_reid_layout_follows_market1501(reid_root: Path) -> None:
    train = _market(reid_root / "bounding_box_train")
    query = _market(reid_root / "query")
    gallery = _market(reid_root / "bounding_box_test")
    assert len(train) == TINY_REID["num_train_ids"] * TINY_REID["train_images_per_id"]
    train_pids = {pid for pid, _, _ in train}
    test_pids = {pid for pid, _, _ in query}
    assert len(train_pids) == TINY_REID["num_train_ids"] and len(test_pids) == TINY_REID["num_test_ids"]
    assert train_pids.isdisjoint(test_pids) and 0 not in train_pids | test_pids and -1 not in train_pids | test_pids
    assert Counter(pid for pid, _, _ in gallery)[0] == TINY_REID["num_distractors"]
    assert Counter(pid for pid, _, _ in gallery)[-1] == TINY_REID["num_junk"]
    assert {pid for pid, _, _ in gallery} - {0, -1} == test_pids
    # one query per (pid, camera); each has a same-camera AND an other-camera gallery match
    assert len(query) == len({(pid, cam) for pid, cam, _ in query}) == TINY_REID["num_test_ids"] * TINY_REID["query_cams_per_id"]
    gallery_cams = defaultdict(list)
    for pid, cam, _ in gallery:
        gallery_cams[pid].append(cam)
    for pid, cam, _ in query:
        assert cam in gallery_cams[pid], "same-camera gallery image missing: the removal rule would not matter"
        assert any(c != cam for c in gallery_cams[pid]), "no cross-camera match for a query"
    # all names distinct across folders (frame numbers are unique per camera), several cameras used
    names = [p.name for _, _, p in train + query + gallery]
    assert len(names) == len(set(names))
    assert len({cam for _, cam, _ in train}) >= 4
    with Image.open(train[0][2]) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 128)  # W x H


def test_reid_image_size_is_configurable(tmp_path: Path) -> None:
    root = generate_synthetic_reid(tmp_path / "r", num_train_ids=2, train_images_per_id=2, num_test_ids=2,
                                   gallery_images_per_id=3, num_distractors=1, num_junk=1, height=96, width=48)
    for p in root.rglob("*.jpg"):
        with Image.open(p) as img:
            assert img.size == (48, 96)


def test_faces_layout_identity_folders_and_lfw(faces_root: Path) -> None:
    ids = sorted(p.name for p in (faces_root / "train").iterdir())
    assert ids == [f"{i:07d}" for i in range(TINY_FACES["num_train_ids"])]
    for ident in ids:
        files = sorted(p.name for p in (faces_root / "train" / ident).iterdir())
        assert files == [f"{k:03d}.jpg" for k in range(TINY_FACES["images_per_train_id"])]
    people = sorted(p.name for p in (faces_root / "lfw").iterdir())
    assert len(people) == TINY_FACES["num_test_ids"] and not set(people) & set(ids)
    for name in people:
        assert re.fullmatch(r"[A-Z][a-z]+_[A-Z][a-z]+", name)
        files = sorted(p.name for p in (faces_root / "lfw" / name).iterdir())
        assert files == [f"{name}_{k:04d}.jpg" for k in range(1, TINY_FACES["images_per_test_id"] + 1)]
    with Image.open(faces_root / "lfw" / people[0] / f"{people[0]}_0001.jpg") as img:
        assert img.mode == "RGB" and img.size == (112, 112)
    lines = (faces_root / "pairs.txt").read_text().splitlines()
    assert lines[0].split() == [str(TINY_FACES["num_folds"]), str(TINY_FACES["pairs_per_fold"])]
    body = [line.split("\t") for line in lines[1:]]
    per_fold = TINY_FACES["pairs_per_fold"]
    assert len(body) == 2 * TINY_FACES["num_folds"] * per_fold
    fold_people = []
    for f in range(TINY_FACES["num_folds"]):
        block = body[2 * f * per_fold : 2 * (f + 1) * per_fold]
        assert all(len(t) == 3 for t in block[:per_fold]) and all(len(t) == 4 for t in block[per_fold:])
        assert all(t[0] != t[2] for t in block[per_fold:])
        fold_people.append({t[0] for t in block} | {t[2] for t in block if len(t) == 4})
    assert not set.intersection(*fold_people), "LFW folds must be person-disjoint"


def test_expressions_csv_is_fer2013_format(fer_csv: Path) -> None:
    assert fer_csv.name == "fer2013.csv"
    with open(fer_csv, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["emotion", "pixels", "Usage"]
    usage = Counter(r[2] for r in rows[1:])
    assert usage == {"Training": TINY_FER["num_train"], "PublicTest": TINY_FER["num_public_test"],
                     "PrivateTest": TINY_FER["num_private_test"]}
    assert [r[2] for r in rows[1:]] == sorted((r[2] for r in rows[1:]), key=["Training", "PublicTest", "PrivateTest"].index)
    for r in rows[1:]:
        px = [int(v) for v in r[1].split(" ")]
        assert len(px) == 48 * 48 and 0 <= min(px) and max(px) <= 255
    train_labels = Counter(int(r[0]) for r in rows[1:] if r[2] == "Training")
    assert sorted(train_labels) == list(range(len(EXPRESSION_NAMES)))  # balanced: all 7 present
    assert max(train_labels.values()) - min(train_labels.values()) <= 1


# -------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    sizes = dict(num_train_ids=3, train_images_per_id=2, num_test_ids=2, gallery_images_per_id=3,
                 num_distractors=2, num_junk=1)
    a = _all_files(generate_synthetic_reid(tmp_path / "a", seed=5, **sizes))
    b = _all_files(generate_synthetic_reid(tmp_path / "b", seed=5, **sizes))
    c = _all_files(generate_synthetic_reid(tmp_path / "c", seed=6, **sizes))
    assert a == b
    assert a.keys() != c.keys() and not set(a.values()) & set(c.values())


@pytest.mark.parametrize("generate, sizes", [(generate_synthetic_faces, TINY_FACES),
                                             (generate_synthetic_expressions, TINY_FER)])
def test_faces_and_expressions_are_deterministic(generate, sizes: dict, tmp_path: Path) -> None:
    def files(name: str, seed: int) -> dict[str, bytes]:
        generate(tmp_path / name, seed=seed, **sizes)
        return _all_files(tmp_path / name)

    a, b, c = files("a", 1), files("b", 1), files("c", 2)
    assert a == b
    assert a != c


# ----------------------------------------------------------------------------- nuisance
def test_images_of_one_identity_really_vary(reid_root: Path, faces_root: Path) -> None:
    """Guard against a degenerate generator that repeats one picture per identity."""
    by_pid = defaultdict(list)
    for pid, _, p in _market(reid_root / "bounding_box_train"):
        by_pid[pid].append(np.asarray(Image.open(p), dtype=np.float32))
    diffs = [np.abs(imgs[0] - imgs[1]).mean() for imgs in by_pid.values()]
    assert min(diffs) > 10.0
    faces = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted((faces_root / "train" / "0000000").iterdir())]
    assert min(np.abs(faces[0] - f).mean() for f in faces[1:]) > 8.0


# ----------------------------------------------------------------------- discriminability
def _colour_histogram(path: Path) -> np.ndarray:
    """Reference ReID feature: grey-world-normalised 6x6x6 RGB histogram of the central region."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    h, w, _ = a.shape
    a = a[h // 8 : 7 * h // 8, w // 4 : 3 * w // 4]
    a = a / a.reshape(-1, 3).mean(0) * 128.0  # cancels the camera's colour cast
    q = np.clip(a * 6 / 256, 0, 5).astype(int).reshape(-1, 3)
    hist = np.bincount(q[:, 0] * 36 + q[:, 1] * 6 + q[:, 2], minlength=216).astype(np.float64)
    return np.sqrt(hist / hist.sum())  # Hellinger: dot product = Bhattacharyya coefficient


def test_reid_identity_recoverable_by_colour_histogram(tmp_path: Path) -> None:
    root = generate_synthetic_reid(tmp_path / "r", seed=0, num_train_ids=1, train_images_per_id=1, num_test_ids=25,
                                   gallery_images_per_id=6, num_distractors=10, num_junk=0)
    query = _market(root / "query")
    gallery = _market(root / "bounding_box_test")
    gp = np.array([pid for pid, _, _ in gallery])
    gc = np.array([cam for _, cam, _ in gallery])
    gf = np.stack([_colour_histogram(p) for _, _, p in gallery])
    hits, chance = 0, 0.0
    for pid, cam, p in query:
        valid = ~((gp == pid) & (gc == cam))  # Market rule: same pid + same camera is not a match
        sims = gf[valid] @ _colour_histogram(p)
        hits += int(gp[valid][np.argmax(sims)] == pid)
        chance += float((gp[valid] == pid).mean())  # rank-1 of a random ranking
    rank1, chance = hits / len(query), chance / len(query)
    assert rank1 > 5 * chance, (rank1, chance)


def _fer_arrays(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    with open(path, newline="") as fh:
        for r in list(csv.reader(fh))[1:]:
            rows[r[2]].append((int(r[0]), np.array(r[1].split(), dtype=np.float64).reshape(48, 48)))
    return {u: (np.stack([v for _, v in items]), np.array([y for y, _ in items])) for u, items in rows.items()}


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)


def test_expressions_recoverable_by_pixel_classifiers(tmp_path: Path) -> None:
    """Chance is 1/7 = 0.143. Nearest centroid on the face's pixels (hair and background
    cropped off, as they carry identity, not expression) and a ridge classifier on the whole
    (2x2-pooled) image must both clearly beat it."""
    path = generate_synthetic_expressions(tmp_path / "f", seed=0, num_train=700, num_public_test=210,
                                          num_private_test=7)
    data = _fer_arrays(path)
    (xt, yt), (xs, ys) = data["Training"], data["PublicTest"]

    face_t, face_s = _standardise(xt[:, 12:46, 10:38]), _standardise(xs[:, 12:46, 10:38])
    centroids = np.stack([face_t[yt == c].mean(0) for c in range(7)])
    nearest = np.argmin(((face_s[:, None] - centroids[None]) ** 2).sum(-1), axis=1)

    def pooled(x: np.ndarray) -> np.ndarray:
        return np.c_[_standardise(x.reshape(-1, 24, 2, 24, 2).mean((2, 4))), np.ones(len(x))]

    a = pooled(xt)
    w = np.linalg.solve(a.T @ a + 100.0 * np.eye(a.shape[1]), a.T @ np.eye(7)[yt])
    ridge = np.argmax(pooled(xs) @ w, axis=1)
    nc_acc, ridge_acc = (nearest == ys).mean(), (ridge == ys).mean()
    assert nc_acc > 0.28 and ridge_acc > 0.3, (nc_acc, ridge_acc)


# ------------------------------------------------------------------------- bad arguments
def test_unknown_or_bad_sizes_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_ids.*valid: num_train_ids"):
        generate_synthetic_reid(tmp_path / "a", num_ids=3)
    with pytest.raises(ConfigError, match="num_train=2.5"):
        generate_synthetic_expressions(tmp_path / "b", num_train=2.5)
    with pytest.raises(ConfigError, match="query_cams_per_id=6"):
        generate_synthetic_reid(tmp_path / "c", query_cams_per_id=6)
    with pytest.raises(ConfigError, match="pairs_per_fold=50"):
        generate_synthetic_faces(tmp_path / "d", num_test_ids=20, pairs_per_fold=50)
    with pytest.raises(ConfigError, match="deformation=-0.5"):
        generate_synthetic_reid(tmp_path / "e", deformation=-0.5)
    with pytest.raises(ConfigError, match="deformation=nan"):
        generate_synthetic_faces(tmp_path / "f", deformation=float("nan"))
    with pytest.raises(ConfigError, match="deformation=True"):
        generate_synthetic_expressions(tmp_path / "g", deformation=True)
    with pytest.raises(ConfigError, match="between 0 and 4"):
        generate_synthetic_reid(tmp_path / "h", deformation=9)
    assert not any(tmp_path.iterdir())  # validated before anything was written


def test_refuses_to_generate_into_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="non-empty folder"):
        generate_synthetic_faces(tmp_path, **TINY_FACES)


# -------------------------------------------------------------------------- deformation
def _render(person, pose, size=(64, 128)) -> np.ndarray:
    from PIL import ImageDraw

    from strabench.data.synthetic_reid import _draw_figure

    img = Image.new("RGB", size, (128, 128, 128))
    _draw_figure(img, person, pose, size[0] / 2, 8.0, size[1] - 16.0)
    return np.asarray(img, dtype=np.float32)


def test_deformation_zero_is_rigid_and_one_is_not() -> None:
    """At 0 every image of a person has the same silhouette (front-facing, no swing, bend, lean
    or head offset); at 1 and 2 the poses differ from image to image, more at 2."""
    from strabench.data._synthetic_kit import _rng
    from strabench.data.synthetic_reid import _draw_pose, _random_person

    person = _random_person(_rng(0, 1, 17))
    spread = {}
    for level in (0.0, 1.0, 2.0):
        images = [_render(person, _draw_pose(_rng(0, 2, 17, k), level, _rng(0, 8, 2, 17, k))) for k in range(12)]
        spread[level] = np.mean([np.abs(images[0] - im).mean() for im in images[1:]])
        if level == 0.0:
            assert all(np.array_equal(images[0], im) for im in images[1:])
    assert 0.0 == spread[0.0] < spread[1.0] < spread[2.0], spread


def test_deformation_scales_the_same_draws() -> None:
    """Each level draws the same numbers from the image's generator and scales them, so what is
    drawn after the pose (the camera's nuisance) is the same at every level."""
    from strabench.data._synthetic_kit import _rng
    from strabench.data.synthetic_reid import _draw_pose

    poses, after = {}, {}
    for level in (0.0, 0.5, 1.0, 2.5):
        rng = _rng(3, 2, 5, 1)
        poses[level] = _draw_pose(rng, level, _rng(3, 8, 2, 5, 1))
        after[level] = rng.random()
    assert len(set(after.values())) == 1
    for level in (0.5, 2.5):
        assert poses[level].swing == pytest.approx(level * poses[1.0].swing)
        assert poses[level].lean == pytest.approx(level * poses[1.0].lean)
        assert poses[level].shins == pytest.approx(tuple(level * v for v in poses[1.0].shins))
    assert poses[0.0].facing_front and poses[0.0].head == 0.0 and not any(poses[0.0].arm_up)
    assert poses[1.0].turn == 1.0 and poses[1.0].tilt == 0.0 and poses[1.0].warp == 0.0
    assert poses[2.5].turn < 1.0 and poses[2.5].warp > 0.0


def test_deformation_levels_draw_the_same_people_and_scenes(tmp_path: Path) -> None:
    """A controlled sweep: the same file names (people, cameras, frames) at every level, and an
    image differs between levels far less than two images of one person differ at one level."""
    sizes = dict(num_train_ids=3, train_images_per_id=3, num_test_ids=3, query_cams_per_id=1,
                 gallery_images_per_id=2, num_distractors=2, num_junk=1)
    roots = {d: generate_synthetic_reid(tmp_path / f"d{d}", seed=2, deformation=d, **sizes) for d in (0.0, 1.0, 2.0)}
    files = {d: sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg")) for d, root in roots.items()}
    assert files[0.0] == files[1.0] == files[2.0]

    def pixels(d: float, name: str) -> np.ndarray:
        return np.asarray(Image.open(roots[d] / name), dtype=np.float32)

    train = [n for n in files[1.0] if n.startswith("bounding_box_train/")]
    across_levels = np.median([np.abs(pixels(0.0, n) - pixels(2.0, n)).mean() for n in train])
    same_person = np.median([np.abs(pixels(1.0, a) - pixels(1.0, b)).mean()
                             for a, b in zip(train, train[1:]) if a[19:23] == b[19:23]])
    assert across_levels < 0.5 * same_person, (across_levels, same_person)


def test_face_deformation_scales_pose_and_expression(tmp_path: Path) -> None:
    from strabench.data._synthetic_kit import _rng
    from strabench.data.synthetic_faces import _Expression, _face_nuisance_expression

    assert _face_nuisance_expression(_rng(0, 15, 1, 0), 0.0) == _Expression()  # neutral
    assert _face_nuisance_expression(_rng(0, 15, 1, 0), 1.0) != _Expression()
    sizes = dict(num_train_ids=2, images_per_train_id=2, num_test_ids=4, images_per_test_id=2, num_folds=2,
                 pairs_per_fold=1, size=32)
    a = _all_files(generate_synthetic_faces(tmp_path / "a", seed=1, deformation=0.0, **sizes))
    b = _all_files(generate_synthetic_faces(tmp_path / "b", seed=1, deformation=1.0, **sizes))
    assert a.keys() == b.keys() and a["pairs.txt"] == b["pairs.txt"]
    assert sum(a[k] != b[k] for k in a if k.endswith(".jpg")) == len([k for k in a if k.endswith(".jpg")])


def test_deformation_is_part_of_the_dataset_identity(tmp_path: Path) -> None:
    from strabench.data.synthetic import dataset_folder

    small = dict(num_train_ids=2, train_images_per_id=2, num_test_ids=2, gallery_images_per_id=3)
    one = dataset_folder("synthetic_reid", cache_dir=tmp_path, **small)
    assert dataset_folder("synthetic_reid", cache_dir=tmp_path, deformation=1, **small) == one  # 1 and 1.0: one dataset
    assert dataset_folder("synthetic_reid", cache_dir=tmp_path, deformation=1.0, **small) == one
    assert dataset_folder("synthetic_reid", cache_dir=tmp_path, deformation=0.0, **small) != one


# ------------------------------------------------------------------------ default sizes
#: Measured on a trained network (docs/data.md), on test sets of 400-500 identities: the spread
#: of per-query AP (percentage points: 13-15.4 measured) and the correlation of the AP of two
#: queries of one person (0.33-0.50 measured), rounded up.
PER_QUERY_AP_SD, QUERY_ICC = 16.0, 0.5


def _reid_half_width(sizes) -> float:
    """95 % half-width of mAP when identities are resampled: queries / design effect."""
    q = sizes["query_cams_per_id"]
    effective = sizes["num_test_ids"] * q / (1.0 + (q - 1) * QUERY_ICC)
    return 1.96 * PER_QUERY_AP_SD / effective**0.5


def test_default_test_sets_give_narrow_intervals() -> None:
    """The dataclass defaults and the quick profile: test sets large enough for +-1.5 mAP (ReID,
    with the measured spread and correlation) and +-1 point (accuracies, binomial bound at 50 %),
    training sets as they were, test people disjoint from training people. No image is drawn:
    the LFW pairs are built for the default number of people to check each is in one pair."""
    import dataclasses

    from strabench.data._synthetic_kit import _rng
    from strabench.data.synthetic import ExpressionSizes, FaceSizes, ReIDSizes
    from strabench.data.synthetic_faces import _lfw_pairs
    from strabench.train.recipes import QUICK

    def binomial_half_width(n: int) -> float:
        return 1.96 * 0.5 / n**0.5 * 100.0

    for reid in (dataclasses.asdict(ReIDSizes()), {**dataclasses.asdict(ReIDSizes()), **QUICK["reid"]["data_sizes"]}):
        assert _reid_half_width(reid) <= 1.5, reid
        assert reid["num_train_ids"] + reid["num_test_ids"] <= 1501  # disjoint pids from Market's 1501
    assert (QUICK["reid"]["data_sizes"]["num_train_ids"], QUICK["reid"]["data_sizes"]["train_images_per_id"]) == (150, 6)
    assert (ReIDSizes().num_train_ids, ReIDSizes().train_images_per_id) == (60, 12)

    for face in (FaceSizes(), FaceSizes(**QUICK["face"]["data_sizes"])):
        assert binomial_half_width(2 * face.num_folds * face.pairs_per_fold) <= 1.0
        assert face.num_test_ids >= 3 * face.num_folds * face.pairs_per_fold
        names = [f"P{i}" for i in range(face.num_test_ids)]
        lines = _lfw_pairs(_rng(0, 16), names, face)[1:]
        people = [t for line in lines for t in line.split("\t") if not t.isdigit()]
        assert len(people) == len(set(people)) == 3 * len(lines) // 2  # everyone in exactly one pair
    assert (FaceSizes(**QUICK["face"]["data_sizes"]).num_train_ids, FaceSizes().num_train_ids) == (24, 80)

    for fer in (ExpressionSizes(), ExpressionSizes(**QUICK["fer"]["data_sizes"])):
        for n in (fer.num_public_test, fer.num_private_test):
            assert binomial_half_width(n) <= 1.0 and n % 7 == 0
    assert (ExpressionSizes(**QUICK["fer"]["data_sizes"]).num_train, ExpressionSizes().num_train) == (560, 1400)

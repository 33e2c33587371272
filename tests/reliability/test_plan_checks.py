"""Guarantee 9 -- a plan that `--dry-run` accepts does not fail once started.

Each case is a suite (or option) that used to pass ``--dry-run`` and then fail every run:
seeds beyond what the random generators take, a device the machine lacks, a measure input
the model cannot take, synthetic sizes no machine could hold, images that do not decode, a
FER csv bad on a later row, an LFW View 1 pairs file, a dataset cache that cannot be
written, a block setting the layer refuses, a name with a control character. `run` and
`run --dry-run` must both refuse it: one line, exit 2, and the results root not even created.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from .helpers import assert_error_reported, assert_one_line_error, invoke, no_exception, suite_text

MODEL = "mobilenetv2_100"


def _jpeg(path: Path, colour: tuple[int, int, int] = (120, 30, 200), size: tuple[int, int] = (16, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")


def _market(root: Path, *, corrupt: bool) -> Path:
    """A valid Market-1501 layout; ``corrupt``: one gallery image holds random bytes (not truncated:
    the file size is plausible and the name is right, only decoding finds it)."""
    for pid in (1, 2):
        for k in range(4):
            _jpeg(root / "bounding_box_train" / f"{pid:04d}_c{1 + k % 2}s1_{k:06d}_00.jpg", (60 * pid, 20 * k, 90))
    for pid in (3, 4):
        _jpeg(root / "query" / f"{pid:04d}_c1s1_000001_00.jpg", (40 * pid, 10, 10))
        for cam in (2, 3):
            _jpeg(root / "bounding_box_test" / f"{pid:04d}_c{cam}s1_000002_00.jpg", (40 * pid, 12, 12))
    if corrupt:
        victim = sorted((root / "bounding_box_test").iterdir())[-1]
        victim.write_bytes(os.urandom(victim.stat().st_size))
    return root


def _fer(path: Path) -> Path:
    rows = ["emotion,pixels,Usage"] + [
        f"{i % 7},{' '.join(['128'] * 2304)},{u}" for i, u in enumerate(["Training"] * 40 + ["PublicTest"] * 7 + ["PrivateTest"] * 7)
    ]
    rows[45] = "3,1 2 3,PublicTest"  # a short row 45 lines down
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _faces_view1(root: Path) -> Path:
    for person in ("a", "b"):
        _jpeg(root / "train" / person / "0001.jpg", size=(32, 32))
        for n in (1, 2):
            _jpeg(root / "lfw" / f"P{person}" / f"P{person}_{n:04d}.jpg", size=(32, 32))
    (root / "pairs.txt").write_text("1\nPa 1 2\nPa 1 Pb 1\n", encoding="utf-8")  # View 1: one count
    return root


def _suite(tmp: Path, *, data: str = "synthetic_reid", measure_input: str = "32x16", extra_train: str = "",
           overrides: str = "", name: str = "tiny", variant: str = "mnv2", model: str = MODEL) -> Path:
    text = suite_text(name=name, variants=((variant, model, overrides),))
    text = text.replace('data = "synthetic_reid"', f'data = "{data}"').replace('input = "32x16"', f'input = "{measure_input}"')
    if data != "synthetic_reid":  # real data: no synthetic sizes
        text = "\n".join(line for line in text.splitlines() if not line.startswith("data_sizes"))
    if extra_train:  # replaces the tiny synthetic sizes
        text = "\n".join(extra_train if line.startswith("data_sizes") else line for line in text.splitlines())
    path = tmp / "suite.toml"
    path.write_text(text, encoding="utf-8")
    return path


CASES: dict[str, tuple[Callable[[Path], tuple[Path, list[str]]], tuple[str, ...]]] = {
    "seed_beyond_torch": (lambda t: (_suite(t), ["--seeds", str(2**64)]), ("seed", "18446744073709551615")),
    "measure_input_not_a_multiple": (lambda t: (_suite(t, measure_input="40x16"), []), ("[measure] input 40x16", "multiples")),
    "synthetic_images_too_large": (
        lambda t: (_suite(t, extra_train="data_sizes = { height = 200000, width = 100000 }"), []), ("pixels",)),
    "synthetic_set_too_large": (
        lambda t: (_suite(t, extra_train="data_sizes = { num_train_ids = 1000, train_images_per_id = 100000, height = 256, width = 128 }"), []),
        ("GiB",)),
    "market_image_does_not_decode": (
        lambda t: (_suite(t, data=f"market1501:{_market(t / 'market', corrupt=True)}"), []), ("corrupt image", "bounding_box_test")),
    "fer_bad_later_row": (
        lambda t: (_suite(t, data=f"fer2013:{_fer(t / 'fer2013.csv')}", model="fer_resnet", measure_input="48x48"), []),
        ("fer2013.csv:46", "pixels")),
    "lfw_view_1_pairs": (
        lambda t: (_suite(t, data=f"faces:{_faces_view1(t / 'faces')}", model="face_resnet50", measure_input="112x112"), []),
        ("pairs.txt", "View 1")),
    "block_setting_refused": (lambda t: (_suite(t, model="mobilenetv2_100_stra", overrides="overrides = { groups = 7 }"), []),
                              ("groups",)),
    "variant_name_with_newline": (lambda t: (_suite(t, variant="mnv2\\n"), []), ("variants[0].name",)),
    "suite_name_with_control_char": (lambda t: (_suite(t, name="tiny\\u0007"), []), ("name",)),
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_plan_that_would_fail_once_started_is_refused_up_front(tmp_path: Path, case: str, dry_run: bool) -> None:
    make, expected = CASES[case]
    suite, extra = make(tmp_path)
    out = tmp_path / "results"
    result = invoke(["run", suite, "--out", out, *extra, *(["--dry-run"] if dry_run else [])])
    no_exception(result)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert_one_line_error(result.stderr, *expected, strict=True)
    assert not out.exists(), "a refused plan wrote into the results root"


def test_the_same_suite_without_the_fault_is_accepted(tmp_path: Path) -> None:
    """The control: the valid versions of the files above pass `--dry-run` (the checks do not
    refuse everything)."""
    for suite in (_suite(tmp_path), _suite(tmp_path, data=f"market1501:{_market(tmp_path / 'm', corrupt=False)}")):
        result = invoke(["run", suite, "--out", tmp_path / "results", "--dry-run"])
        no_exception(result)
        assert result.exit_code == 0, result.stderr


def test_cuda_on_a_machine_without_it_is_refused_up_front(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: `--device cuda` is a valid plan here")
    for dry in ([], ["--dry-run"]):
        result = invoke(["run", _suite(tmp_path), "--out", tmp_path / "results", "--device", "cuda", *dry])
        no_exception(result)
        assert result.exit_code == 2
        assert_one_line_error(result.stderr, "cuda", "not available", strict=True)
    assert not (tmp_path / "results").exists()


def test_a_dataset_cache_that_cannot_be_written_is_refused_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("STRABENCH_CACHE", str(blocker / "cache"))
    for dry in ([], ["--dry-run"]):
        result = invoke(["run", _suite(tmp_path), "--out", tmp_path / "results", *dry])
        no_exception(result)
        assert result.exit_code == 2
        assert_one_line_error(result.stderr, "cannot write dataset cache", str(blocker), strict=True)
    assert not (tmp_path / "results").exists()
    assert blocker.read_text() == "not a folder"


def test_a_block_setting_the_layer_refuses_is_one_line_from_train_too(tmp_path: Path) -> None:
    result = invoke(["train", "mobilenetv2_100_stra", "--set", "model_overrides={groups=7}", "--epochs", "1",
                     "--device", "cpu", "--out", tmp_path / "run"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "groups=7")
    result = invoke(["flops", "resnet50", "--input", "99984x99984"])
    no_exception(result)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "GiB", strict=True)


def test_an_input_no_machine_here_could_hold_is_one_line_before_train_touches_data(tmp_path: Path) -> None:
    """`train --input 99984x99984` passed the divisor check and then died allocating ~30 GB."""
    result = invoke(["train", MODEL, "--input", "99984x99984", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "run"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "99984", "GiB")

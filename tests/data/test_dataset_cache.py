"""ensure_dataset: cache location, reuse, regeneration when stale, atomic install."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from strabench.data import synthetic
from strabench.data.synthetic import MANIFEST_NAME, cache_root, ensure_dataset
from strabench.errors import ConfigError, DataError

from .conftest import TINY_FACES, TINY_FER

SMALL = dict(num_train_ids=2, train_images_per_id=2, num_test_ids=2, gallery_images_per_id=3,
             num_distractors=1, num_junk=1)


def _count_writes(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Path]:
    """Wrap a generator's writer so tests can see whether it ran."""
    calls: list[Path] = []
    gen = synthetic._GENERATORS[name]

    def write(root: Path, seed: int, sizes: object) -> None:
        calls.append(root)
        gen.write(root, seed, sizes)

    monkeypatch.setitem(synthetic._GENERATORS, name, dataclasses.replace(gen, write=write))
    return calls


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STRABENCH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "strabench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "strabench"
    monkeypatch.setenv("STRABENCH_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_kernel_cache_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from strabench.cache import kernel_cache_dir
    from strabench.layers import _local_kernel

    monkeypatch.delenv("STRABENCH_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("STRABENCH_CACHE", str(tmp_path / "env"))
    assert kernel_cache_dir() == tmp_path / "env" / "kernels"  # under the cache, by default
    monkeypatch.setenv("STRABENCH_KERNEL_CACHE", str(tmp_path / "kernels-here"))
    assert kernel_cache_dir() == tmp_path / "kernels-here"  # its own setting wins; the datasets stay
    assert cache_root() == tmp_path / "env"
    assert _local_kernel._cache_dir() == tmp_path / "kernels-here"  # where the loader builds and looks


def test_generates_once_then_reuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _count_writes(monkeypatch, "synthetic_reid")
    monkeypatch.setenv("STRABENCH_CACHE", str(tmp_path))
    first = ensure_dataset("synthetic_reid", seed=1, **SMALL)
    assert first.parent == tmp_path and first.name.startswith("synthetic_reid-")
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["name"] == "synthetic_reid" and manifest["seed"] == 1
    assert manifest["sizes"]["num_train_ids"] == 2 and manifest["sizes"]["height"] == 128  # defaults resolved
    assert manifest["file_count"] == sum(1 for p in first.rglob("*") if p.is_file()) - 1
    assert ensure_dataset("synthetic_reid", seed=1, **SMALL) == first
    assert len(calls) == 1
    # the same sizes spelled with an explicit default are the same dataset
    assert ensure_dataset("synthetic_reid", seed=1, height=128, **SMALL) == first and len(calls) == 1
    # other seed / sizes: another folder
    assert ensure_dataset("synthetic_reid", seed=2, **SMALL) != first
    assert ensure_dataset("synthetic_reid", seed=1, **dict(SMALL, num_junk=2)) != first
    assert len(calls) == 3
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".stale-*"))


@pytest.mark.parametrize("damage", ["delete_file", "add_file", "corrupt_manifest", "delete_manifest",
                                    "old_version", "truncate_file"])
def test_regenerates_when_stale(damage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _count_writes(monkeypatch, "synthetic_reid")
    root = ensure_dataset("synthetic_reid", seed=0, cache_dir=tmp_path, **SMALL)
    victim = sorted((root / "query").iterdir())[0]
    original = victim.read_bytes()
    manifest = root / MANIFEST_NAME
    if damage == "delete_file":
        victim.unlink()
    elif damage == "add_file":
        (root / "query" / "0001_c1s1_000001_00.jpg").write_bytes(original)
    elif damage == "corrupt_manifest":
        manifest.write_text("{not json")
    elif damage == "delete_manifest":
        manifest.unlink()
    elif damage == "old_version":
        data = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(dict(data, version=data["version"] - 1)))
    elif damage == "truncate_file":
        victim.write_bytes(original[: len(original) // 2])
    again = ensure_dataset("synthetic_reid", seed=0, cache_dir=tmp_path, **SMALL)
    assert again == root and len(calls) == 2
    assert victim.read_bytes() == original
    if damage == "add_file":
        assert not (root / "query" / "0001_c1s1_000001_00.jpg").exists()
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp or stale folders left


def test_interrupted_generation_leaves_nothing_that_looks_complete(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    gen = synthetic._GENERATORS["synthetic_faces"]

    def write_half_then_die(root: Path, seed: int, sizes: object) -> None:
        (root / "train").mkdir()
        (root / "train" / "partial.jpg").write_bytes(b"\xff\xd8")
        raise KeyboardInterrupt

    monkeypatch.setitem(synthetic._GENERATORS, "synthetic_faces", dataclasses.replace(gen, write=write_half_then_die))
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset("synthetic_faces", cache_dir=tmp_path, **TINY_FACES)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    root = ensure_dataset("synthetic_faces", cache_dir=tmp_path, **TINY_FACES)
    assert (root / "pairs.txt").is_file() and (root / MANIFEST_NAME).is_file()


def test_a_killed_run_leftover_temp_folder_is_ignored(tmp_path: Path) -> None:
    """A SIGKILL mid-generation leaves ``.tmp-*`` behind; it must never be mistaken for the dataset."""
    first = ensure_dataset("synthetic_expressions", cache_dir=tmp_path, **TINY_FER)
    leftover = tmp_path / f".tmp-{first.parent.name}-dead"
    leftover.mkdir()
    (leftover / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    assert ensure_dataset("synthetic_expressions", cache_dir=tmp_path, **TINY_FER) == first
    assert first.name == "fer2013.csv" and first.read_text().count("\n") == 1 + sum(TINY_FER.values())


def test_concurrent_install_keeps_the_valid_copy(tmp_path: Path) -> None:
    """Two processes racing: the loser's os.replace fails on a complete folder and it adopts it."""
    root = ensure_dataset("synthetic_expressions", cache_dir=tmp_path, **TINY_FER).parent
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    expected = {k: manifest[k] for k in ("name", "version", "seed", "sizes", "entry")}
    loser = tmp_path / ".tmp-loser"
    loser.mkdir()
    (loser / "x").write_text("y")
    synthetic._install(loser, root, expected)
    assert not loser.exists() and (root / "fer2013.csv").is_file()
    # and a stale folder in the way is replaced
    (root / MANIFEST_NAME).unlink()
    fresh = tmp_path / ".tmp-fresh"
    fresh.mkdir()
    (fresh / "marker").write_text("new")
    synthetic._install(fresh, root, expected)
    assert (root / "marker").read_text() == "new" and not fresh.exists()


def test_bad_names_and_sizes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown synthetic dataset 'synthetic_cars'.*synthetic_reid"):
        ensure_dataset("synthetic_cars", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="num_images"):
        ensure_dataset("synthetic_faces", cache_dir=tmp_path, num_images=3)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_unwritable_cache_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=r"file/cache: cannot create the dataset cache"):
        ensure_dataset("synthetic_expressions", cache_dir=blocker / "cache", **TINY_FER)

"""Guarantee 5 -- no code execution from files.

A malicious pickle whose ``__reduce__`` runs ``os.system("touch MARKER")`` is fed to every
path that reads a pickle-based file: ``strabench eval --checkpoint``, resuming a run from its
``checkpoint.pt`` (even with a matching sha256 sidecar), ``create_model(pretrained=...)`` and
``strabench train --pretrained``, ``strabench viz --checkpoint``, the checkpoint library
functions, and the face ``.bin`` loader (directly and through ``strabench train --data faces:``).
Each must refuse with a clear error, and the marker file must not exist afterwards. A control
test first proves the payload is live: plain ``pickle.loads`` does create the marker.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from .helpers import TINY_INPUT, TINY_TRAIN_ARGS, assert_error_reported, assert_one_line_error, invoke, no_exception

MODEL = "mobilenetv2_100"


class _Payload:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _touch(marker: Path) -> _Payload:
    return _Payload(f"touch {shlex.quote(str(marker))}")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    assert not path.exists()
    return path


def _raw_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"model": {"w": _touch(marker)}}, protocol=2))
    return path


def _torch_zip(path: Path, marker: Path) -> Path:
    """The realistic attack: a torch.save zip whose data.pkl calls os.system."""
    import torch

    torch.save({"strabench_checkpoint": 1, "config_hash": None, "state": {"model": _touch(marker), "epoch": 1}}, path)
    return path


def _with_sidecar(path: Path) -> Path:
    """What an attacker who also rewrites the checksum file produces: the checksum matches."""
    data = path.read_bytes()
    sidecar = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    path.with_name(path.name + ".sha256").write_text(json.dumps(sidecar))
    return path


MAKERS: dict[str, Callable[[Path, Path], Path]] = {"raw_pickle": _raw_pickle, "torch_zip": _torch_zip}


def test_control_the_payload_really_executes(tmp_path: Path, marker: Path) -> None:
    """Without this, every other test here could pass because the payload is inert."""
    pickle.loads(_raw_pickle(tmp_path / "evil.pkl", marker).read_bytes())
    assert marker.exists()
    marker.unlink()
    import torch

    torch.load(_torch_zip(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_eval_checkpoint_refuses_malicious_file(tmp_path: Path, marker: Path, kind: str) -> None:
    evil = MAKERS[kind](tmp_path / "evil.pt", marker)
    result = invoke(["eval", MODEL, "--checkpoint", evil, "--device", "cpu"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("sidecar", [False, True], ids=["no_sidecar", "matching_sidecar"])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_resume_refuses_malicious_checkpoint(tmp_path: Path, marker: Path, kind: str, sidecar: bool) -> None:
    run = tmp_path / "run"
    run.mkdir()
    evil = MAKERS[kind](run / "checkpoint.pt", marker)
    if sidecar:
        _with_sidecar(evil)
    result = invoke(["train", MODEL, *TINY_TRAIN_ARGS, "--out", run])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "checkpoint.pt")
    assert not marker.exists()
    assert not (run / "result.json").exists()


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_create_model_pretrained_refuses_malicious_file(tmp_path: Path, marker: Path, kind: str) -> None:
    from strabench.errors import StrabenchError
    from strabench.registry import create_model

    evil = MAKERS[kind](tmp_path / "evil.pth", marker)
    with pytest.raises(StrabenchError, match="evil.pth"):
        create_model(MODEL, task="reid", num_classes=4, pretrained=str(evil))
    assert not marker.exists()


def test_train_pretrained_option_refuses_malicious_file(tmp_path: Path, marker: Path) -> None:
    evil = _torch_zip(tmp_path / "evil.pth", marker)
    result = invoke(["train", MODEL, *TINY_TRAIN_ARGS, "--out", tmp_path / "run", "--pretrained", evil])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "evil.pth")
    assert not marker.exists()


def test_viz_checkpoint_refuses_malicious_file(tmp_path: Path, marker: Path) -> None:
    evil = _with_sidecar(_torch_zip(tmp_path / "evil.pt", marker))
    picture = tmp_path / "person.png"
    Image.new("RGB", (16, 32), (100, 50, 25)).save(picture)
    result = invoke(["viz", "resnet50_stra", "--checkpoint", evil, "--image", picture, "--out", tmp_path / "viz", "--input", TINY_INPUT])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "evil.pt")
    assert not marker.exists()
    assert not list(tmp_path.glob("viz/*.png"))


def _load_checkpoint(path: Path) -> object:
    from strabench.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _load_latest_good(path: Path) -> object:
    from strabench.train.checkpoint import load_latest_good

    return load_latest_good(path.parent)


def _load_model_weights(path: Path) -> object:
    import torch

    from strabench.train.checkpoint import load_model_weights

    return load_model_weights(torch.nn.Linear(2, 2), path)


def _read_state(path: Path) -> object:
    from strabench.models.weights import read_state

    return read_state(path)


LIBRARY_LOADERS: dict[str, Callable[[Path], object]] = {
    "load_checkpoint": _load_checkpoint,
    "load_latest_good": _load_latest_good,
    "load_model_weights": _load_model_weights,
    "read_state": _read_state,
}


@pytest.mark.parametrize("loader", sorted(LIBRARY_LOADERS))
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_library_loaders_refuse_malicious_file(tmp_path: Path, marker: Path, kind: str, loader: str) -> None:
    from strabench.errors import CheckpointError

    evil = _with_sidecar(MAKERS[kind](tmp_path / "checkpoint.pt", marker))
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        LIBRARY_LOADERS[loader](evil)
    assert not marker.exists()


# --- face verification .bin (a plain pickle by format) --------------------------------------------


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


FACE_BIN_PAYLOADS: dict[str, Callable[[Path], object]] = {
    # the attack at the top level, inside the image list, and as the issame list
    "top_level": lambda m: _touch(m),
    "in_images": lambda m: ([_jpeg_bytes(), _touch(m)], [True]),
    "as_issame": lambda m: ([_jpeg_bytes(), _jpeg_bytes()], _touch(m)),
}


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("where", sorted(FACE_BIN_PAYLOADS))
def test_face_bin_loader_refuses_malicious_pickle(tmp_path: Path, marker: Path, where: str, protocol: int) -> None:
    from strabench.data.verification import load_face_bin
    from strabench.errors import DataError

    evil = tmp_path / "lfw.bin"
    evil.write_bytes(pickle.dumps(FACE_BIN_PAYLOADS[where](marker), protocol=protocol))
    with pytest.raises(DataError, match="lfw.bin"):
        load_face_bin(evil)
    assert not marker.exists()


def test_train_with_malicious_face_bin_is_refused(tmp_path: Path, marker: Path) -> None:
    data = tmp_path / "faces"
    person = data / "train" / "person_a"
    person.mkdir(parents=True)
    (person / "0001.jpg").write_bytes(_jpeg_bytes())
    (data / "agedb_30.bin").write_bytes(pickle.dumps(([_jpeg_bytes(), _touch(marker)], [True])))
    result = invoke(["train", "face_resnet50", "--data", f"faces:{data}", "--input", "32x32", "--epochs", "1", "--batch", "1",
                     "--device", "cpu", "--out", tmp_path / "run"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, "agedb_30.bin", "refused")
    assert not marker.exists()


# --- protocol-2 .bin files: the one safe global ------------------------------------------------


def test_face_bin_pickled_by_python3_with_protocol_2_is_read(tmp_path: Path) -> None:
    """Python 3 stores bytes under protocol 2 as ``_codecs.encode(text, 'latin1')`` (a global),
    which is how insightface's own .bin files were written: they must load, byte for byte."""
    from strabench.data.verification import load_face_bin

    images = [_jpeg_bytes() for _ in range(4)]
    raw = pickle.dumps((images, [True, False]), protocol=2)
    assert b"_codecs" in raw and b"encode" in raw  # the control: this really uses the global
    path = tmp_path / "lfw.bin"
    path.write_bytes(raw)
    loaded = load_face_bin(path)
    assert loaded.images == images and loaded.issame.tolist() == [True, False]


class _CodecsCall:
    """A pickle that calls ``_codecs.encode`` with the given arguments (not str + latin1)."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self):
        import _codecs

        return (_codecs.encode, self.args)


@pytest.mark.parametrize("args", [(b"x\x9c", "zlib_codec"), ("payload", "rot13"), ("text", "utf-8"), (b"raw",)])
def test_the_codecs_global_does_nothing_but_latin1_strings_to_bytes(tmp_path: Path, args: tuple) -> None:
    from strabench.data.verification import load_face_bin
    from strabench.errors import DataError

    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([_CodecsCall(*args), _jpeg_bytes()], [True]), protocol=2))
    with pytest.raises(DataError, match=r"lfw\.bin: refused.*_codecs"):
        load_face_bin(path)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_protocol_2_bytes_do_not_open_a_door_for_code(tmp_path: Path, marker: Path, protocol: int) -> None:
    """The payload next to genuine protocol-2 bytes is still refused, and the refusal says how to
    re-save a trusted file as plain data."""
    from strabench.data.verification import load_face_bin
    from strabench.errors import DataError

    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([_jpeg_bytes(), _touch(marker)], [True]), protocol=protocol))
    with pytest.raises(DataError, match=r"refused.*re-save it as plain data") as info:
        load_face_bin(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()

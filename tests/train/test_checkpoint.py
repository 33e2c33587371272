"""Tests for strabench.train.checkpoint: roundtrip, corruption, unsafe files, kill safety."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import strabench.train.checkpoint as ckpt
from strabench.errors import CheckpointError, StrabenchError
from strabench.io import sha256_file
from strabench.train.checkpoint import (
    CorruptCheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_latest_good,
    load_model_weights,
    previous_path,
    restore_rng_state,
    save_checkpoint,
    sidecar_path,
)


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scheduler


def train_step(model, optimizer, scheduler):
    """Uses every RNG a training loop touches: torch (data, dropout), numpy, python."""
    x = torch.randn(6, 4)
    scale = 1.0 + float(np.random.rand()) + random.random()
    loss = model(x).pow(2).mean() * scale
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def full_state(model, optimizer, scheduler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "best": {"mAP": 0.5, "history": [0.1, 0.2]},
        "rng": capture_rng_state(),
    }


def simple_state(tag: int) -> dict:
    return {"epoch": tag, "weights": torch.full((64,), float(tag))}


def assert_nested_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_nested_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_nested_equal(x, y)
    else:
        assert a == b or (a != a and b != b)  # NaN == NaN here


# --- roundtrip --------------------------------------------------------------------------------


def test_roundtrip_and_exact_resume(tmp_path):
    random.seed(1)
    np.random.seed(1)
    model, optimizer, scheduler = make_run()
    for _ in range(2):
        train_step(model, optimizer, scheduler)
    state = full_state(model, optimizer, scheduler, epoch=2)
    path = tmp_path / "checkpoint.pt"
    digest = save_checkpoint(path, state, config_hash="cfg-1")
    assert digest == sha256_file(path)
    snapshot = copy.deepcopy(state)  # state_dict() tensors alias the live parameters

    for _ in range(3):  # the uninterrupted run
        train_step(model, optimizer, scheduler)
    expected = [p.detach().clone() for p in model.parameters()]

    loaded = load_checkpoint(path, expected_config_hash="cfg-1")
    assert_nested_equal(loaded, snapshot)
    random.seed(999)  # scramble everything the checkpoint must restore
    np.random.seed(999)
    model2, optimizer2, scheduler2 = make_run(seed=123)
    model2.load_state_dict(loaded["model"])
    optimizer2.load_state_dict(loaded["optimizer"])
    scheduler2.load_state_dict(loaded["scheduler"])
    assert restore_rng_state(loaded["rng"]) == []
    for _ in range(3):
        train_step(model2, optimizer2, scheduler2)
    for p, q in zip(expected, model2.parameters()):
        assert torch.equal(p, q)


def test_sidecar_holds_digest_and_size(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    record = json.loads(sidecar_path(path).read_text())
    assert record == {"sha256": sha256_file(path), "size": path.stat().st_size}
    assert sidecar_path(path).name == "checkpoint.pt.sha256"
    assert previous_path(path).name == "checkpoint.prev.pt"


def test_second_save_keeps_previous_with_its_sidecar(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    assert not previous_path(path).exists()
    save_checkpoint(path, simple_state(2))
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    assert json.loads(sidecar_path(previous_path(path)).read_text())["sha256"] == sha256_file(
        previous_path(path)
    )
    save_checkpoint(path, simple_state(3))
    assert load_checkpoint(previous_path(path))["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.prev.pt", "checkpoint.prev.pt.sha256", "checkpoint.pt", "checkpoint.pt.sha256",
    ]


# --- corruption -------------------------------------------------------------------------------


def test_truncated_checkpoint_detected_and_previous_used(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint .*checkpoint.pt is corrupt \(sha256 mismatch"):
        load_checkpoint(path)
    with caplog.at_level("WARNING"):
        state, used, warnings = load_latest_good(tmp_path)
    assert state["epoch"] == 1 and used == previous_path(path)
    assert any("sha256 mismatch" in w for w in warnings)
    assert any("previous checkpoint" in w for w in warnings)
    assert "sha256 mismatch" in caplog.text


def test_truncated_checkpoint_without_sidecar_is_not_loadable(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    sidecar_path(path).unlink()
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match="not a valid strabench checkpoint or unsafe to load"):
        load_checkpoint(path)


def test_same_size_bit_flip_is_a_sha256_mismatch(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt \\(sha256 mismatch"):
        load_checkpoint(path)


def test_config_hash_mismatch_is_refused_without_fallback(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1), config_hash="aaa111")
    save_checkpoint(path, simple_state(2), config_hash="aaa111")
    message = (
        f"checkpoint {path} was written by a run with config hash aaa111, this run has bbb222; "
        "refusing to load"
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected_config_hash="bbb222")
    assert str(info.value) == message and not isinstance(info.value, CorruptCheckpointError)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_latest_good(tmp_path, expected_config_hash="bbb222")
    assert load_checkpoint(path)["epoch"] == 2  # no expectation: loads
    assert load_checkpoint(path, expected_config_hash="aaa111")["epoch"] == 2


def test_missing_hash_counts_as_mismatch(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    with pytest.raises(CheckpointError, match="config hash None, this run has x"):
        load_checkpoint(path, expected_config_hash="x")


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "checkpoint.pt"
    payload = {"strabench_checkpoint": 1, "config_hash": None, "state": {"x": Evil(marker)}}
    with open(path, "wb") as handle:
        if writer == "pickle":
            pickle.dump(payload, handle)
        else:
            torch.save(payload, handle)
    with pytest.raises(CorruptCheckpointError, match="not a valid strabench checkpoint or unsafe to load"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="unsafe to load"):
        load_model_weights(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_latest_good(tmp_path)
    assert not marker.exists()
    # The file really is an exploit: an unsafe load runs the command.
    if writer == "pickle":
        with open(path, "rb") as handle:
            pickle.load(handle)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_current_falls_back_to_previous(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    sidecar_path(path).unlink()
    marker = tmp_path / "MARKER"
    with open(path, "wb") as handle:
        pickle.dump(Evil(marker), handle)
    state, used, warnings = load_latest_good(tmp_path)
    assert state["epoch"] == 1 and used.name == "checkpoint.prev.pt"
    assert not marker.exists()


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CorruptCheckpointError, match="no 'strabench_checkpoint' marker"):
        load_checkpoint(path)


def test_load_latest_good_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_latest_good(tmp_path)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    for p in (path, previous_path(path)):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as info:
        load_latest_good(tmp_path)
    assert "checkpoint.pt" in str(info.value) and "checkpoint.prev.pt" in str(info.value)


def test_missing_current_uses_previous(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    path.unlink()
    state, used, warnings = load_latest_good(tmp_path)
    assert state["epoch"] == 1 and "missing" in warnings[0]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


# --- kill safety ------------------------------------------------------------------------------


def count_replaces(monkeypatch, fail_at: int | None):
    """Patch os.replace (as used by strabench) to raise on call number ``fail_at``."""
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(errno.EIO, f"simulated kill at replace #{fail_at}")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_save_replaces_four_times(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    calls = count_replaces(monkeypatch, fail_at=None)
    save_checkpoint(path, simple_state(2))
    assert calls["n"] == 4  # prev sidecar, cur -> prev, tmp -> cur, cur sidecar


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_failure_at_any_replace_leaves_a_good_checkpoint(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    count_replaces(monkeypatch, fail_at)
    with pytest.raises(CheckpointError, match="simulated kill") as info:
        save_checkpoint(path, simple_state(2))
    assert isinstance(info.value, StrabenchError)
    monkeypatch.undo()
    state, used, _ = load_latest_good(tmp_path)
    assert state["epoch"] == 1  # the new one never got a matching sidecar
    assert not list(tmp_path.glob(".*.tmp"))
    # ... and the next save recovers fully.
    save_checkpoint(path, simple_state(3))
    assert load_latest_good(tmp_path)[0]["epoch"] == 3


def good_checkpoints(directory: Path) -> list[int]:
    """Epochs of the checkpoint files that match their sidecar and load."""
    epochs = []
    for p in (directory / "checkpoint.pt", directory / "checkpoint.prev.pt"):
        if p.exists() and sidecar_path(p).exists():
            try:
                epochs.append(load_checkpoint(p)["epoch"])
            except CheckpointError:
                pass
    return epochs


def test_invariant_over_many_interrupted_saves(tmp_path, monkeypatch):
    """Random interruptions, including of saves that follow interrupted saves: after every one
    at least one checkpoint matches its sidecar, and it is the newest completed save or the
    one before it (never older)."""
    rng = random.Random(0)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(0))
    completed = [0]
    for epoch in range(1, 40):
        fail_at = rng.choice([None, 1, 2, 3, 4])
        count_replaces(monkeypatch, fail_at)
        try:
            save_checkpoint(path, simple_state(epoch))
            completed.append(epoch)
        except CheckpointError:
            pass
        monkeypatch.undo()
        good = good_checkpoints(tmp_path)
        assert good, f"no good checkpoint after epoch {epoch} (fail_at={fail_at})"
        newest = load_latest_good(tmp_path)[0]["epoch"]
        assert newest == completed[-1] or newest in completed[-2:]
        assert max(good) == completed[-1] or fail_at == 4


def test_unverified_current_is_not_rotated_over_good_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    count_replaces(monkeypatch, fail_at=4)  # new checkpoint.pt in place, its sidecar not
    with pytest.raises(CheckpointError):
        save_checkpoint(path, simple_state(2))
    monkeypatch.undo()
    assert good_checkpoints(tmp_path) == [1]  # only prev verifies
    save_checkpoint(path, simple_state(3))
    assert load_checkpoint(path)["epoch"] == 3
    assert load_checkpoint(previous_path(path))["epoch"] == 1  # kept, not replaced by epoch 2


def _count_hashes(monkeypatch) -> list[Path]:
    import strabench.models.weights as weights

    hashed: list[Path] = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda path: hashed.append(Path(path)) or real(path))
    return hashed


def test_the_checkpoint_this_process_saved_is_rotated_without_being_read_back(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    hashed = _count_hashes(monkeypatch)
    save_checkpoint(path, simple_state(2))
    assert hashed == []  # its digest was taken while writing it, and nothing touched it since
    assert good_checkpoints(tmp_path) == [2, 1]


@pytest.mark.parametrize("how", ["same size, same mtime", "rewritten in place", "replaced by another file"])
def test_a_checkpoint_touched_after_its_save_is_verified_before_it_is_rotated(tmp_path, monkeypatch, how):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    data, stat = bytearray(path.read_bytes()), path.stat()
    if how == "same size, same mtime":  # a flipped byte, the timestamps put back: only the ctime tells
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif how == "rewritten in place":
        path.write_bytes(bytes(data[:-10]))
    else:  # the same size, another inode
        data[len(data) // 2] ^= 0xFF
        other = tmp_path / "other.pt"
        other.write_bytes(bytes(data))
        os.replace(other, path)
    hashed = _count_hashes(monkeypatch)
    save_checkpoint(path, simple_state(3))
    assert hashed or how == "rewritten in place"  # a size change is caught before hashing
    assert good_checkpoints(tmp_path) == [3, 1]  # the damaged epoch 2 was not rotated over epoch 1


def test_disk_full_while_writing_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, simple_state(1))
    save_checkpoint(path, simple_state(2))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_save)
    with pytest.raises(CheckpointError, match="disk full") as info:
        save_checkpoint(path, simple_state(3))
    assert "writing checkpoint" in str(info.value) and "previous checkpoint is untouched" in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_checkpoint(path)["epoch"] == 2


KILLER_CHILD = textwrap.dedent(
    """
    import sys, torch
    from strabench.train.checkpoint import save_checkpoint
    path = sys.argv[1]
    start = int(sys.argv[2])
    print("ready", flush=True)
    epoch = start
    while True:
        save_checkpoint(path, {"epoch": epoch, "w": torch.full((20000,), float(epoch))})
        epoch += 1
    """
)


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 0, "w": torch.zeros(20000)})
    for round_, delay in enumerate((0.3,)):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLER_CHILD, str(path), str(1000 * (round_ + 1))],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        state, used, _ = load_latest_good(tmp_path)
        assert torch.equal(state["w"], torch.full((20000,), float(state["epoch"])))
        assert good_checkpoints(tmp_path)


def test_stale_temp_files_are_cleaned_up(tmp_path):
    path = tmp_path / "checkpoint.pt"
    junk = tmp_path / ".checkpoint.pt.deadbeef0000.tmp"
    junk.write_bytes(b"x" * 100)
    other = tmp_path / ".results.json.deadbeef0000.tmp"  # not ours: left alone
    other.write_bytes(b"x")
    save_checkpoint(path, simple_state(1))
    assert not junk.exists() and other.exists()


# --- what may be stored -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "state,where",
    [
        ({"best": np.float64(0.5)}, "state['best']"),
        ({"rng": {"keys": np.zeros(3)}}, "state['rng']['keys']"),
        ({"lst": [1, object()]}, "state['lst'][1]"),
        ({"d": defaultdict(int)}, "state['d']"),
        ({"f": frozenset([1])}, "state['f']"),
    ],
)
def test_unstorable_values_are_refused_at_save_time(tmp_path, state, where):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="weights_only=True") as info:
        save_checkpoint(path, state)
    assert where in str(info.value)
    assert not path.exists()


def test_storable_values_roundtrip(tmp_path):
    state = {
        "ints": [1, -2, 2**40], "floats": (0.5, float("inf"), float("nan")), "s": "é", "none": None,
        "flag": True, "bytes": b"\x00", "set": {1, 2}, "size": torch.Size([2, 3]),
        "dtype": torch.float16, "device": torch.device("cpu"), 3: "int key",
        "param": nn.Parameter(torch.ones(2)),
    }
    save_checkpoint(tmp_path / "c.pt", state)
    assert_nested_equal(load_checkpoint(tmp_path / "c.pt"), state)


def test_bad_arguments(tmp_path):
    with pytest.raises(CheckpointError, match="must be a dict"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="directory .* does not exist"):
        save_checkpoint(tmp_path / "missing" / "c.pt", {})


# --- RNG --------------------------------------------------------------------------------------


def draw():
    return (
        torch.rand(5).tolist(),
        np.random.rand(5).tolist(),
        np.random.normal(size=3).tolist(),  # exercises numpy's cached gaussian
        [random.random() for _ in range(5)],
        random.gauss(0, 1),
    )


def test_rng_capture_restore_reproduces_streams(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.normal()  # leave a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in python's
    state = capture_rng_state()
    first = draw()
    restore_rng_state(state)
    assert draw() == first
    # through a checkpoint file (weights_only=True)
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    draw()
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert draw() == first


def test_rng_state_is_plain_data():
    state = capture_rng_state()
    assert isinstance(state["torch"], torch.Tensor) and state["torch"].dtype == torch.uint8
    assert type(state["numpy"]["keys"]) is list and len(state["numpy"]["keys"]) == 624
    assert type(state["python"]["state"]) is list and len(state["python"]["state"]) == 625
    if not torch.cuda.is_available():
        assert state["torch_cuda"] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only resume path")
def test_cuda_states_without_cuda_give_a_note():
    state = capture_rng_state()
    state["torch_cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    notes = restore_rng_state(state)
    assert len(notes) == 1 and "GPU randomness will differ" in notes[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_capture_restore():
    torch.cuda.manual_seed_all(3)
    state = capture_rng_state()
    assert len(state["torch_cuda"]) == torch.cuda.device_count()
    first = torch.rand(4, device="cuda").tolist()
    assert restore_rng_state(state) == []
    assert torch.rand(4, device="cuda").tolist() == first


def test_malformed_rng_state():
    state = capture_rng_state()
    del state["numpy"]
    with pytest.raises(CheckpointError, match="RNG state is malformed"):
        restore_rng_state(state)


# --- model weights ----------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, classes)


def test_load_plain_state_dict_and_checkpoint_model_entry(tmp_path):
    source = Net()
    torch.save(source.state_dict(), tmp_path / "plain.pth")
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": source.state_dict(), "epoch": 3})
    for file in ("plain.pth", "checkpoint.pt"):
        target = Net()
        assert load_model_weights(target, tmp_path / file) == ([], [])
        for (k, a), b in zip(source.state_dict().items(), target.state_dict().values()):
            assert torch.equal(a, b), k


def test_weights_of_another_model_are_refused(tmp_path):
    torch.save(nn.Sequential(nn.Linear(3, 3)).state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="another model") as info:
        load_model_weights(Net(), tmp_path / "other.pth")
    message = str(info.value)
    assert "missing keys (features.0.weight" in message and "unexpected keys (0.weight" in message


def test_shape_mismatch_strict_and_non_strict(tmp_path, caplog):
    source = Net(classes=751)
    torch.save(source.state_dict(), tmp_path / "reid.pth")
    with pytest.raises(CheckpointError, match=r"fc.weight: file \(751, 4\) vs model \(10, 4\)"):
        load_model_weights(Net(classes=10), tmp_path / "reid.pth")
    target = Net(classes=10)
    fc_before = target.fc.weight.detach().clone()
    with caplog.at_level("WARNING"):
        missing, unexpected = load_model_weights(target, tmp_path / "reid.pth", strict=False)
    assert missing == ["fc.weight", "fc.bias"] and unexpected == ["fc.weight", "fc.bias"]
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert torch.equal(target.fc.weight, fc_before)
    assert "non-strictly" in caplog.text


def test_dataparallel_hint(tmp_path):
    wrapped = {f"module.{k}": v for k, v in Net().state_dict().items()}
    torch.save(wrapped, tmp_path / "dp.pth")
    with pytest.raises(CheckpointError, match="DataParallel"):
        load_model_weights(Net(), tmp_path / "dp.pth")


def test_not_a_state_dict(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state_dict"):
        load_model_weights(Net(), tmp_path / "list.pth")
    save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        load_model_weights(Net(), tmp_path / "checkpoint.pt")

"""Tests for strabench.io: atomic writes under failure, torn JSONL lines, the directory lock."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import strabench.io as sio
from strabench.errors import DataError, LockError
from strabench.io import (
    FileLock,
    acquire_lock,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_stream,
    atomic_write_text,
    read_jsonl,
    sha256_file,
)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_writes_roundtrip(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "a.json").read_text()
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    atomic_write_json(tmp_path / "a.json", {"z": 0})  # overwrite
    assert json.loads((tmp_path / "a.json").read_text()) == {"z": 0}
    assert leftovers(tmp_path) == []


def test_new_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("writer", ["bytes", "text", "json"])
def test_failed_replace_keeps_previous_file(tmp_path, monkeypatch, writer):
    target = tmp_path / "result.json"
    target.write_text("old\n")

    def failing_replace(src, dst):
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(sio.os, "replace", failing_replace)
    call = {
        "bytes": lambda: atomic_write_bytes(target, b"new"),
        "text": lambda: atomic_write_text(target, "new"),
        "json": lambda: atomic_write_json(target, {"new": True}),
    }[writer]
    with pytest.raises(OSError, match="simulated"):
        call()
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_failed_write_midway_keeps_previous_file(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"previous")

    def half_then_disk_full(handle):
        handle.write(b"partial data")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write_stream(target, half_then_disk_full)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_failed_fsync_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("previous")

    def failing_fsync(fd):
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(sio.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_text(target, "new")
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_keyboard_interrupt_during_write_cleans_up(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"previous")

    def interrupted(handle):
        handle.write(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_stream(target, interrupted)
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("previous")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            atomic_write_text(target, "new")
    finally:
        tmp_path.chmod(0o700)
    assert target.read_text() == "previous"


def test_sha256_file(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1024) == hashlib.sha256(data).hexdigest()


# --- JSON lines -------------------------------------------------------------------------------


def test_jsonl_roundtrip(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "note": "é"}]
    for record in records:
        append_jsonl(path, record)
    assert read_jsonl(path) == (records, 0)
    assert path.read_text(encoding="utf-8").count("\n") == 2


@pytest.mark.parametrize("fragment", [b'{"epoch": 3, "lo', b'{"note": "\xc3', b"{"])
def test_truncated_last_line_is_skipped_and_counted(tmp_path, fragment):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1})
    append_jsonl(path, {"epoch": 2})
    with open(path, "ab") as handle:  # a writer killed mid-line
        handle.write(fragment)
    contents = read_jsonl(path)
    assert contents.records == [{"epoch": 1}, {"epoch": 2}]
    assert contents.skipped == 1
    # Appending after the torn line must not glue the new record onto the fragment.
    append_jsonl(path, {"epoch": 3})
    assert read_jsonl(path) == ([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], 1)


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_read_jsonl_ignores_blank_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path) == ([{"a": 1}, {"a": 2}], 0)


# --- lock -------------------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid no longer exists
    return child.pid


def write_lock(directory: Path, pid: int, hostname: str | None = None) -> None:
    record = {"pid": pid, "hostname": hostname or socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"}
    (directory / ".lock").write_text(json.dumps(record))


def test_lock_is_exclusive_within_a_process(tmp_path):
    with acquire_lock(tmp_path) as lock:
        record = json.loads((tmp_path / ".lock").read_text())
        assert record["pid"] == os.getpid()
        assert record["hostname"] == socket.gethostname()
        assert "started" in record
        assert not lock.took_over_stale
        with pytest.raises(LockError) as info:
            acquire_lock(tmp_path)
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and str(tmp_path / ".lock") in message
        assert "this process" in message
    assert not (tmp_path / ".lock").exists()
    with FileLock(tmp_path):  # free again
        pass


def test_lock_released_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with acquire_lock(tmp_path):
            raise RuntimeError("boom")
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, pid)
    with caplog.at_level("WARNING", logger="strabench.io"):
        with acquire_lock(tmp_path) as lock:
            assert lock.took_over_stale
            assert lock.stale_owner is not None and lock.stale_owner["pid"] == pid
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"pid {pid}" in caplog.text and "stale" in caplog.text
    assert not (tmp_path / ".lock").exists()


def test_lock_of_live_process_is_respected(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(tmp_path, sleeper.pid)
        with pytest.raises(LockError, match=f"pid {sleeper.pid}"):
            acquire_lock(tmp_path)
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid(), hostname="some-other-host.invalid")
    with pytest.raises(LockError, match="another host"):
        acquire_lock(tmp_path)


def test_unreadable_lock_is_trusted_briefly_then_taken_over(tmp_path):
    (tmp_path / ".lock").write_bytes(b'{"pid": 12')  # creator died mid-write
    with pytest.raises(LockError, match="being written"):
        acquire_lock(tmp_path)
    old = time.time() - 3600
    os.utime(tmp_path / ".lock", (old, old))
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale and lock.stale_owner is None


def test_release_leaves_someone_elses_lock_alone(tmp_path):
    lock = acquire_lock(tmp_path)
    (tmp_path / ".lock").write_text('{"pid": 1, "hostname": "x", "started": "y"}')
    lock.release()
    assert (tmp_path / ".lock").exists()


# A lock holder in another process. It imports first, then waits for "go" on stdin (so racers
# start together), tries the lock, reports, and holds it until stdin is closed.
HOLDER = textwrap.dedent(
    """
    import sys
    from strabench.io import acquire_lock
    from strabench.errors import LockError
    sys.stdin.readline()
    try:
        lock = acquire_lock(sys.argv[1])
    except LockError as err:
        print("refused:", err, flush=True)
        sys.exit(3)
    print("locked", "stale" if lock.took_over_stale else "fresh", flush=True)
    sys.stdin.read()
    lock.release()
    """
)


def spawn_holder(directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_second_process_refused_then_dead_holder_taken_over(tmp_path):
    holder = spawn_holder(tmp_path)
    try:
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().startswith("locked fresh")
        # Another process while the first holds it: refused, naming the holder and the file.
        second = subprocess.run(
            [sys.executable, "-c", HOLDER, str(tmp_path)], input="go\n", capture_output=True, text=True
        )
        assert second.returncode == 3
        assert f"pid {holder.pid}" in second.stdout and str(tmp_path / ".lock") in second.stdout
        # And this process too.
        with pytest.raises(LockError, match=f"pid {holder.pid}"):
            acquire_lock(tmp_path)
        # SIGKILL: no cleanup runs, the lock file stays behind ...
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert (tmp_path / ".lock").exists()
        # ... and is taken over as stale.
        with acquire_lock(tmp_path) as lock:
            assert lock.took_over_stale and lock.stale_owner["pid"] == holder.pid
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_released_lock_can_be_taken_by_another_process(tmp_path):
    with acquire_lock(tmp_path):
        pass
    other = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path)], input="go\n", capture_output=True, text=True
    )
    assert other.stdout.startswith("locked fresh"), other.stdout + other.stderr


def test_racing_takeovers_of_a_stale_lock_admit_exactly_one(tmp_path):
    write_lock(tmp_path, dead_pid())
    racers = [spawn_holder(tmp_path) for _ in range(4)]
    try:
        for proc in racers:
            proc.stdin.write("go\n")
        for proc in racers:
            proc.stdin.flush()
        first_lines = [proc.stdout.readline() for proc in racers]
    finally:
        outputs = [first + proc.communicate(timeout=60)[0] for first, proc in zip(first_lines, racers)]
    winners = [out for out in outputs if out.startswith("locked")]
    assert len(winners) == 1, outputs
    assert winners[0].startswith("locked stale")
    assert sum(out.startswith("refused") for out in outputs) == 3
    assert not (tmp_path / ".lock").exists()

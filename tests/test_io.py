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
import strabench.locks as slocks
from strabench.errors import DataError, LockError, StrabenchError, WriteError
from strabench.io import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_stream,
    atomic_write_text,
    ensure_directory,
    read_jsonl,
    sha256_file,
    write_temp_sibling_hashed,
)
from strabench.locks import FileLock, acquire_lock, remove_stale_temps


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
        with pytest.raises(WriteError) as info:
            atomic_write_text(target, "new")
        assert info.value.errno == errno.EACCES and str(target) in str(info.value)
    finally:
        tmp_path.chmod(0o700)
    assert target.read_text() == "previous"


def test_write_errors_are_one_line_strabench_errors_naming_the_path(tmp_path, monkeypatch):
    """Disk full: a StrabenchError (the CLI prints one line) that is still the OSError it was."""
    target = tmp_path / "results.csv"
    target.write_text("old\n")

    def disk_full(handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as info:
        atomic_write_stream(target, disk_full)
    error = info.value
    assert isinstance(error, StrabenchError) and isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert str(error) == f"cannot write {target}: no space left on device (disk full)"
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []

    real_open = os.open
    monkeypatch.setattr(sio.os, "open", lambda path, flags, *a: (_ for _ in ()).throw(
        OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))) if str(path).endswith(".jsonl") else real_open(path, flags, *a))
    with pytest.raises(WriteError, match=r"cannot append to .*metrics\.jsonl: Read-only file system"):
        append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 1})


def test_ensure_directory_names_what_is_in_the_way(tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert ensure_directory(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    ensure_directory(tmp_path / "a" / "b")  # exists: fine
    for bad in (tmp_path / "a_file", tmp_path / "a_file" / "sub"):
        with pytest.raises(WriteError, match=rf"cannot create directory {bad}: "):
            ensure_directory(bad)


def test_sha256_file(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1024) == hashlib.sha256(data).hexdigest()


def test_a_hashed_temp_sibling_has_the_hash_of_its_bytes_even_when_its_writer_seeks(tmp_path):
    import torch

    tmp, digest = write_temp_sibling_hashed(tmp_path / "ckpt.pt", lambda f: torch.save({"w": torch.randn(300, 7)}, f))
    assert digest == hashlib.sha256(tmp.read_bytes()).hexdigest() and tmp.name.startswith(".ckpt.pt.")

    def seeks(f):  # a header patched after the body (as zipfile does on a seekable file)
        f.write(b"\0" * 4 + b"body")
        f.seek(0)
        f.write(b"head")

    tmp, digest = write_temp_sibling_hashed(tmp_path / "patched", seeks)
    assert tmp.read_bytes() == b"headbody" and digest == hashlib.sha256(b"headbody").hexdigest()


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


def test_read_jsonl_skips_absurdly_nested_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n' + "[" * 100_000 + "]" * 100_000 + '\n{"a": 2}\n')
    assert read_jsonl(path) == ([{"a": 1}, {"a": 2}], 1)


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


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"garbage"])
def test_unreadable_lock_is_taken_over_at_once_under_the_directory_guard(tmp_path, content):
    """An empty/torn lock (an older version killed between create and write): locks are created
    under the flock guard we hold, so nobody is writing it; the re-run must not wait 10 s."""
    (tmp_path / ".lock").write_bytes(content)
    started = time.monotonic()
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale and lock.stale_owner is None
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert time.monotonic() - started < 1.0


@pytest.fixture
def no_flock(monkeypatch):
    """A filesystem where flock is unavailable: the guard is not exclusive."""
    import contextlib

    @contextlib.contextmanager
    def guard(directory):
        yield False

    monkeypatch.setattr(slocks, "_directory_guard", guard)


def test_without_flock_an_unreadable_lock_is_given_time_to_be_written(tmp_path, no_flock):
    import threading

    (tmp_path / ".lock").write_bytes(b'{"pid": ')  # a writer (no-hard-link fallback) mid-write
    finisher = threading.Timer(0.3, lambda: write_lock(tmp_path, os.getpid()))
    finisher.start()
    try:
        with pytest.raises(LockError, match=f"pid {os.getpid()}"):
            acquire_lock(tmp_path)
    finally:
        finisher.join()


def test_without_flock_an_unreadable_lock_is_stale_after_the_grace(tmp_path, no_flock):
    (tmp_path / ".lock").write_bytes(b"")
    started = time.monotonic()
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale
    assert slocks._UNREADABLE_LOCK_GRACE_S - 0.5 <= time.monotonic() - started < slocks._UNREADABLE_LOCK_GRACE_S + 2


def test_lock_file_is_complete_the_moment_it_appears(tmp_path, monkeypatch):
    """The record is written and fsynced to a temp file that is then linked to .lock; a kill at
    the link leaves no lock (and the temp file goes: the next acquisition sweeps it)."""
    real_link = os.link
    seen = []

    def checking_link(src, dst):
        seen.append(json.loads(Path(src).read_text())["pid"])  # complete before it is visible
        return real_link(src, dst)

    monkeypatch.setattr(sio.os, "link", checking_link)
    with acquire_lock(tmp_path):
        assert seen == [os.getpid()]
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(sio.os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        acquire_lock(tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(sio.os, "link", real_link)
    (tmp_path / f".lock.{dead_pid()}.0123abcd.tmp").write_text('{"pid": 1')  # what a SIGKILL leaves
    with acquire_lock(tmp_path) as lock:
        assert not lock.took_over_stale
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_lock_without_hard_links_falls_back_to_exclusive_create(tmp_path, monkeypatch, code):
    monkeypatch.setattr(sio.os, "link", lambda src, dst: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    with acquire_lock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
        with pytest.raises(LockError, match="this process"):
            acquire_lock(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_lock_that_cannot_be_created_is_a_write_error(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(sio.os, "open", read_only)
    with pytest.raises(WriteError, match=rf"cannot create lock file {tmp_path / '.lock'}: Permission denied"):
        acquire_lock(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- stale temp files -------------------------------------------------------------------------


def _planted(path: Path, age_s: float = 3600) -> Path:
    """A torn file as a killed write leaves it, last modified ``age_s`` ago."""
    path.write_text('{"half": ')
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_remove_stale_temps_removes_only_our_old_temp_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ours_old = [
        _planted(tmp_path / ".results.csv.0123456789ab.tmp"),
        _planted(run / ".checkpoint.pt.abcdef012345.tmp"),
        _planted(run / f".lock.{dead_pid()}.0123abcd.tmp"),
    ]
    fresh = _planted(tmp_path / ".plan.json.0123456789ab.tmp", age_s=0)  # a live writer's, maybe
    not_ours = [
        _planted(tmp_path / "notes.tmp"),
        _planted(tmp_path / ".results.csv.tmp"),
        _planted(tmp_path / ".results.csv.0123456789AB.tmp"),
        _planted(tmp_path / ".results.csv.0123456789ab.tmp.bak"),
        _planted(run / "results.csv"),
    ]
    assert sorted(remove_stale_temps(tmp_path)) == sorted(ours_old)
    assert not any(p.exists() for p in ours_old) and all(p.exists() for p in [fresh, *not_ours])
    assert remove_stale_temps(tmp_path, min_age_s=0) == [fresh]


def test_remove_stale_temps_leaves_directories_locked_by_a_live_process_alone(tmp_path):
    busy, idle, mine = tmp_path / "busy", tmp_path / "idle", tmp_path / "mine"
    for directory in (busy, idle, mine):
        (directory / "sub").mkdir(parents=True)
        _planted(directory / ".result.json.0123456789ab.tmp")
        _planted(directory / "sub" / ".x.json.0123456789ab.tmp")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(busy, sleeper.pid)  # training right now: it may rename its temps any moment
        write_lock(idle, dead_pid())
        write_lock(mine, os.getpid())
        removed = remove_stale_temps(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "idle/.result.json.0123456789ab.tmp", "idle/sub/.x.json.0123456789ab.tmp",
        "mine/.result.json.0123456789ab.tmp", "mine/sub/.x.json.0123456789ab.tmp",
    ]
    assert len(list(busy.rglob("*.tmp"))) == 2


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
    from strabench.locks import acquire_lock
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

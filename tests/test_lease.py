"""Locks that tell the truth: reused pids, pid 1 in a container, other hosts, heartbeats, requeues.

Every lock file here is written by the test itself, as the killed holder would have left it,
with the holder's identity taken from /proc directly (never from strabench.lease).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strabench.errors import LockError
from strabench.locks import FileLock, acquire_lock, break_lock, remove_stale_temps

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")


def proc_start(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, parsed here independently of strabench.lease."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split(" ")[19])


def this_machine() -> dict:
    return {
        "hostname": socket.gethostname(),
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "pid_ns": os.readlink("/proc/self/ns/pid"),
    }


def write_lock(directory: Path, *, age_s: float = 0.0, **record) -> Path:
    path = directory / ".lock"
    full = {"started": "2020-01-01T00:00:00+00:00", "heartbeat_s": 30.0, "lease_s": 300.0, "job": None, **record}
    path.write_text(json.dumps(full))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.fixture
def sleeper():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


@pytest.fixture(autouse=True)
def _outside_slurm(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)


@linux_only
def test_lock_records_who_holds_it(tmp_path):
    with acquire_lock(tmp_path):
        record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid()
    assert record["pid_start"] == proc_start(os.getpid())
    assert {k: record[k] for k in ("hostname", "boot_id", "pid_ns")} == this_machine()
    assert record["lease_s"] == 300.0 and record["heartbeat_s"] == 30.0


@linux_only
def test_dead_holder_is_stale(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_lock(tmp_path, pid=child.pid, pid_start=12345, **this_machine())
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale and lock.stale_owner["pid"] == child.pid


@linux_only
def test_reused_pid_is_stale_but_the_real_holder_is_not(tmp_path, sleeper):
    real = proc_start(sleeper.pid)
    write_lock(tmp_path, pid=sleeper.pid, pid_start=real, **this_machine())
    with pytest.raises(LockError, match=f"pid {sleeper.pid}"):
        acquire_lock(tmp_path)
    # The same pid, but the recorded holder started earlier: the pid now belongs to another process.
    write_lock(tmp_path, pid=sleeper.pid, pid_start=real - 1, **this_machine())
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale and lock.stale_owner["pid_start"] == real - 1


@linux_only
def test_pid_1_of_a_killed_container_is_stale(tmp_path, caplog):
    """PID 1 always exists; the lock's pid 1 (a container entrypoint killed with -9) started at
    another time than this machine's pid 1, so it is not the holder."""
    try:
        init_start = proc_start(1)
    except OSError:
        pytest.skip("/proc/1/stat is not readable here")
    write_lock(tmp_path, pid=1, pid_start=init_start + 1000, **this_machine())
    with caplog.at_level("WARNING", logger="strabench.io"):
        with acquire_lock(tmp_path) as lock:
            assert lock.took_over_stale
    assert "pid 1 now belongs to another process" in caplog.text
    write_lock(tmp_path, pid=1, pid_start=init_start, **this_machine())  # the real pid 1 holds it
    with pytest.raises(LockError, match="pid 1 on"):
        acquire_lock(tmp_path)


def test_other_host_with_an_old_heartbeat_is_stale(tmp_path, caplog):
    write_lock(tmp_path, pid=4242, hostname="node17.invalid", boot_id="x", pid_ns="y", age_s=301)
    with caplog.at_level("WARNING", logger="strabench.io"):
        with acquire_lock(tmp_path) as lock:
            assert lock.took_over_stale and lock.stale_owner["hostname"] == "node17.invalid"
    assert "no heartbeat for 301 s (lease 300 s)" in caplog.text


def test_other_host_with_a_fresh_heartbeat_is_refused(tmp_path):
    path = write_lock(tmp_path, pid=4242, hostname="node17.invalid", boot_id="x", pid_ns="y", age_s=290)
    with pytest.raises(LockError, match=r"another host.*heartbeat 290 s ago \(lease 300 s\).*--break-lock"):
        acquire_lock(tmp_path)
    assert json.loads(path.read_text())["hostname"] == "node17.invalid"


def test_the_lease_recorded_by_the_holder_is_used(tmp_path):
    write_lock(tmp_path, pid=4242, hostname="node17.invalid", lease_s=3600.0, age_s=600)
    with pytest.raises(LockError, match="lease 3600 s"):
        acquire_lock(tmp_path)


@linux_only
def test_same_hostname_other_boot_is_judged_by_the_heartbeat(tmp_path, sleeper):
    """Another machine with the same hostname (or this one before a reboot): its pid means
    nothing here, even if a process with that pid runs here."""
    record = {**this_machine(), "boot_id": "another-boot", "pid": sleeper.pid, "pid_start": 1}
    write_lock(tmp_path, age_s=10, **record)
    with pytest.raises(LockError, match="another host"):
        acquire_lock(tmp_path)
    write_lock(tmp_path, age_s=400, **record)
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale


def test_a_requeued_slurm_job_takes_over_its_earlier_incarnation(tmp_path, monkeypatch):
    write_lock(tmp_path, pid=4242, hostname="node17.invalid", job={"id": "981", "restart": 0})
    monkeypatch.setenv("SLURM_JOB_ID", "981")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    with pytest.raises(LockError):  # the same incarnation on another node: alive
        acquire_lock(tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with acquire_lock(tmp_path) as lock:
        assert lock.took_over_stale
        assert json.loads((tmp_path / ".lock").read_text())["job"] == {"id": "981", "restart": 1}


def test_heartbeat_refreshes_the_lock_and_stops_on_release(tmp_path):
    lock = FileLock(tmp_path, heartbeat_s=0.05).acquire()
    path = tmp_path / ".lock"
    os.utime(path, (time.time() - 1000, time.time() - 1000))
    deadline = time.time() + 5
    while time.time() - path.stat().st_mtime > 100 and time.time() < deadline:
        time.sleep(0.02)
    assert time.time() - path.stat().st_mtime < 100, "heartbeat did not refresh the lock"
    lock.release()
    assert not path.exists() and lock._heartbeat is None


def test_a_holder_whose_lock_was_taken_over_knows_it(tmp_path, caplog):
    lock = FileLock(tmp_path, heartbeat_s=0.05).acquire()
    (tmp_path / ".lock").write_text(json.dumps({"pid": 4242, "hostname": "node17.invalid"}))
    deadline = time.time() + 5
    while not lock.lost and time.time() < deadline:
        time.sleep(0.02)
    assert lock.lost
    lock.release()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == 4242  # never deletes another's lock


def test_break_lock_says_what_it_breaks_and_refuses_a_live_local_holder(tmp_path, sleeper):
    assert break_lock(tmp_path) is None
    write_lock(tmp_path, pid=4242, hostname="node17.invalid", age_s=5)
    broken = break_lock(tmp_path)
    assert broken is not None and "pid 4242 on node17.invalid" in broken and "heartbeat 5 s ago" in broken
    assert not (tmp_path / ".lock").exists()
    write_lock(tmp_path, pid=sleeper.pid, hostname=socket.gethostname())
    with pytest.raises(LockError, match=f"pid {sleeper.pid}.*alive on this host"):
        break_lock(tmp_path)
    assert (tmp_path / ".lock").exists()


def test_stale_temp_sweep_honours_other_hosts_within_their_lease(tmp_path):
    busy, gone = tmp_path / "busy", tmp_path / "gone"
    for directory, age in ((busy, 10), (gone, 1000)):
        directory.mkdir()
        write_lock(directory, pid=4242, hostname="node17.invalid", age_s=age)
        temp = directory / ".result.json.0123456789ab.tmp"
        temp.write_text("{")
        os.utime(temp, (time.time() - 3600, time.time() - 3600))
    assert [p.parent.name for p in remove_stale_temps(tmp_path)] == ["gone"]

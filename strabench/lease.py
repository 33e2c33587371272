"""Who holds a lock, and whether they still do: process identity, heartbeat and lease.

A lock that records only a pid and a hostname lies in three common cases: the pid was reused
by another process after a kill (or is pid 1 in a container, which always exists), the holder
ran on another host sharing the filesystem (its pid means nothing here), or the holder's job
was requeued by SLURM onto another node. So a lock record (``holder_record``) also holds:

* the process's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot) and the
  kernel's boot id (``/proc/sys/kernel/random/boot_id``) and pid namespace: on the *same
  machine* (same hostname, boot id and pid namespace) a holder is alive iff its pid exists, is
  not a zombie and started at the recorded time. This is decided at once, without waiting.
* a heartbeat: the holder touches the lock file (mtime) every ``HEARTBEAT_S`` seconds from a
  background thread while it holds it. From *another machine* (or another pid namespace, or
  after a reboot) the pid cannot be checked, so the holder is alive while its heartbeat is
  younger than its lease (``LEASE_S``, recorded in the lock; 5 minutes for a 30 s heartbeat,
  so ten heartbeats must be missed, and clocks may be off by minutes before it matters).
* the scheduler job (``SLURM_JOB_ID`` and ``SLURM_RESTART_COUNT``): a requeued job is a later
  incarnation of the same job, and SLURM never runs two at once, so it takes over the lock of
  its own earlier incarnation immediately instead of waiting out the lease.

``judge(record, heartbeat_age_s)`` applies these rules and says why, in words. The record also
names the holder's parent process, so that ``orphaned`` can tell a holder whose parent died (a
``run --jobs`` worker, which then stops within moments: ``strabench.signals.die_with_parent``).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["HEARTBEAT_S", "LEASE_S", "Verdict", "holder_record", "judge", "orphaned", "process_start"]

#: How often a lock holder refreshes its heartbeat (the lock file's mtime).
HEARTBEAT_S = 30.0
#: How long a lock without a fresh heartbeat is still honoured from another machine.
LEASE_S = 300.0


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def boot_id() -> str | None:
    """The running kernel's boot id (Linux), or None: it changes on every reboot."""
    return _read_text("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> str | None:
    """This process's pid namespace ("pid:[4026531836]"), or None where there is no /proc."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """When ``pid`` started, in a unit that never repeats for another process of this boot.

    Linux: field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), read after the last ")"
    since the command name may hold spaces and parentheses. Elsewhere: psutil's creation time
    in centiseconds. None if the process does not exist (or cannot be inspected).
    """
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is not None:
        fields = stat.rpartition(")")[2].split()
        try:
            return int(fields[19])  # field 22; fields[0] is field 3 (state)
        except (IndexError, ValueError):
            return None
    if Path("/proc").is_dir():
        return None  # Linux, and the process is gone
    import psutil

    try:
        return round(psutil.Process(pid).create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def scheduler_job() -> dict[str, Any] | None:
    """The SLURM job this process runs in (id and restart count), or None outside one."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    try:
        restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        restart = 0
    return {"id": job_id, "restart": restart}


def holder_record(*, lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> dict[str, Any]:
    """The lock record of this process (JSON-able): who, since when, and how to judge it."""
    pid = os.getpid()
    parent = os.getppid()
    return {
        "parent_pid": parent,
        "parent_start": process_start(parent),
        "pid": pid,
        "hostname": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pid_start": process_start(pid),
        "boot_id": boot_id(),
        "pid_ns": pid_namespace(),
        "job": scheduler_job(),
        "heartbeat_s": heartbeat_s,
        "lease_s": lease_s,
    }


@dataclass(frozen=True)
class Verdict:
    """Whether a lock's holder is alive, whether that was checked on this machine, and why."""

    alive: bool
    same_machine: bool
    reason: str


def _same_machine(owner: dict[str, Any]) -> bool:
    """Whether the owner's pid can be checked here: same hostname, boot and pid namespace
    (where the record has them; older records only name the host)."""
    if owner.get("hostname") != socket.gethostname():
        return False
    for key, here in (("boot_id", boot_id()), ("pid_ns", pid_namespace())):
        theirs = owner.get(key)
        if theirs is not None and here is not None and theirs != here:
            return False
    return True


def _pid_state(pid: int) -> str:
    """'alive', 'gone' or 'zombie' for a pid of this machine."""
    import psutil

    if pid <= 0 or not psutil.pid_exists(pid):
        return "gone"
    try:
        return "zombie" if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "alive"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:  # another user's process: it exists
        return "alive"


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default


def judge(owner: dict[str, Any], heartbeat_age_s: float, *, lease_s: float | None = None) -> Verdict:
    """Is the holder of a lock with record ``owner``, last heartbeat ``heartbeat_age_s`` ago, alive?

    ``lease_s`` overrides the lease the record declares (default ``LEASE_S``).
    """
    pid = owner.get("pid")
    if _same_machine(owner) and isinstance(pid, int):
        state = _pid_state(pid)
        if state != "alive":
            return Verdict(False, True, f"pid {pid} is {'a zombie' if state == 'zombie' else 'gone'}")
        recorded = owner.get("pid_start")
        if isinstance(recorded, int) and not isinstance(recorded, bool):
            now = process_start(pid)
            if now is not None and now != recorded:
                return Verdict(False, True, f"pid {pid} now belongs to another process (started at tick {now}, the holder at {recorded})")
        return Verdict(True, True, f"pid {pid} is alive on this host")
    theirs, ours = owner.get("job"), scheduler_job()
    if isinstance(theirs, dict) and ours is not None and theirs.get("id") == ours["id"]:
        restart = theirs.get("restart")
        if isinstance(restart, int) and restart < ours["restart"]:
            return Verdict(False, False, f"SLURM job {ours['id']} was requeued (restart {restart} -> {ours['restart']})")
    lease = lease_s if lease_s is not None else _number(owner.get("lease_s"), LEASE_S)
    if heartbeat_age_s > lease:
        return Verdict(False, False, f"no heartbeat for {heartbeat_age_s:.0f} s (lease {lease:.0f} s)")
    return Verdict(True, False, f"heartbeat {max(heartbeat_age_s, 0.0):.0f} s ago (lease {lease:.0f} s)")


def orphaned(owner: dict[str, Any]) -> bool:
    """Whether the holder recorded in ``owner`` runs on this machine and its parent has died
    since it took the lock (False where that cannot be told: another host, an older record)."""
    parent, started = owner.get("parent_pid"), owner.get("parent_start")
    if not _same_machine(owner) or not isinstance(parent, int) or isinstance(parent, bool) or parent <= 1:
        return False
    if not isinstance(started, int) or isinstance(started, bool):
        return False
    return _pid_state(parent) != "alive" or process_start(parent) != started

"""The results-directory lock, and sweeping what killed writers left behind.

Two runs writing the same results directory would interleave their files, so a run holds
``<directory>/.lock`` (``FileLock``; who may take over whose lock is ``strabench.lease``). A dead
run's lock does not block the next run. ``remove_stale_temps`` deletes the hidden temp files of
killed writes (``strabench.io``'s and this module's own), never in a directory a live run holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from strabench.errors import LockError
from strabench.io import PathLike, _remove_quietly, describe_os_error, ensure_directory, fsync_dir, write_error
from strabench.lease import HEARTBEAT_S, LEASE_S, Verdict, holder_record, judge

__all__ = ["FileLock", "STALE_TEMP_AGE_S", "acquire_lock", "break_lock", "describe_lock_owner", "inspect_lock",
           "remove_stale_temps"]

log = logging.getLogger(__name__)

# The names of strabench's temp files (see ``write_temp_sibling`` and ``FileLock``): only these
# are ever swept by ``remove_stale_temps``.
_WRITE_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp")
_LOCK_TEMP = re.compile(r"\.lock\.\d+\.[0-9a-f]{8}\.tmp")
#: A temp file untouched for this long has no writer: writers rename it right after the last
#: write and fsync. ``remove_stale_temps`` leaves younger ones alone.
STALE_TEMP_AGE_S = 60.0


# --- directory lock ---------------------------------------------------------------------------

# An unparseable lock file is waited on for this long where lock creation is not serialised by
# ``flock`` (see ``FileLock._wait_for_record``); then it is stale.
_UNREADABLE_LOCK_GRACE_S = 2.0
# Filesystems without hard links (FAT, some FUSE/SMB mounts) answer os.link with these.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _parse_lock_record(raw: bytes) -> dict[str, Any] | None:
    """A lock file's record, or None if ``raw`` is not one (empty, torn, garbage)."""
    try:
        owner = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


@contextlib.contextmanager
def _directory_guard(directory: Path) -> Iterator[bool]:
    """Serialise lock acquisition/takeover among processes via ``flock`` on the directory.

    The lock itself is the ``.lock`` file; this short-lived guard only makes "inspect the
    stale lock, delete it, create ours" one atomic step, so two processes that both find a
    stale lock cannot both take it over. Yields whether the guard is exclusive: where
    ``flock`` is unavailable (Windows, some network filesystems) it degrades to the atomic
    create alone and yields False.
    """
    try:
        import fcntl
    except ImportError:
        yield False
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            log.debug("flock on %s unavailable (%s); relying on the atomic create only", directory, err)
            exclusive = False
        else:
            exclusive = True
        yield exclusive
    finally:
        os.close(fd)  # releases the flock


class FileLock:
    """Exclusive ownership of a directory via ``<directory>/.lock`` (JSON, ``strabench.lease``).

    Two runs writing the same results directory would interleave their files. The record is
    written and fsynced to a temp file (``.lock.<pid>.<hex>.tmp``) which is then hard-linked to
    ``.lock``: the link fails if the lock exists, and a kill at any instant leaves either no
    lock or a complete one, never an empty one. The record names the holder (pid, host, process
    start time, boot id, pid namespace, SLURM job) and, while the lock is held, a background
    thread refreshes the file's mtime every ``heartbeat_s`` seconds (the heartbeat). If the
    lock exists and ``strabench.lease.judge`` finds its holder alive (on this machine: the pid
    runs and started when recorded; elsewhere: a heartbeat younger than the lease), acquiring
    raises ``LockError`` naming the holder and the file. If the holder is gone (a killed run, a
    reused pid, a host that stopped beating), or the file holds no readable record (garbage,
    or an empty lock from an older version), the lock is taken over: ``took_over_stale``
    becomes True and ``stale_owner`` holds the dead owner's record (also logged as a warning,
    with the reason), so the caller can say so. Not re-entrant: a second acquisition in the
    same process refuses too. Failing to create the directory or the lock file is a
    ``WriteError``. If another process takes the lock over while we hold it (our heartbeat
    stopped for longer than the lease), ``lost`` becomes True and an error is logged.

    Use ``with FileLock(dir) as lock:`` or ``with acquire_lock(dir) as lock:``; the lock is
    released on exit, exceptions included.
    """

    def __init__(self, directory: PathLike, *, heartbeat_s: float = HEARTBEAT_S, lease_s: float = LEASE_S) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.took_over_stale = False
        """True if acquiring replaced a dead run's lock."""
        self.stale_owner: dict[str, Any] | None = None
        """The dead owner's record (None if it was unreadable or there was none)."""
        self.lost = False
        """True once another process replaced our lock file while we held it."""
        self._content: bytes | None = None
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._content is not None

    def _describe(self, owner: dict[str, Any]) -> str:
        return describe_lock_owner(owner, self.path)

    def _read_owner(self) -> dict[str, Any] | None:
        """The current lock record, or None if there is no readable lock record."""
        try:
            return _parse_lock_record(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def _wait_for_record(self) -> dict[str, Any] | None:
        """Without ``flock``, an unparseable lock may be one being written right now (the
        no-hard-link fallback writes in place): re-read it until it parses or is older than
        ``_UNREADABLE_LOCK_GRACE_S``, then give up on it (None: stale)."""
        while True:
            owner = self._read_owner()
            if owner is not None:
                return owner
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            if age >= _UNREADABLE_LOCK_GRACE_S:
                return None
            time.sleep(min(0.05, _UNREADABLE_LOCK_GRACE_S - age))

    def _check_stale(self, owner: dict[str, Any] | None) -> str:
        """Why the existing lock may be taken over; raise LockError if its holder is alive."""
        if owner is None:
            return "unreadable lock record"  # its creator died, or it is not a strabench lock
        verdict = judge(owner, time.time() - _mtime(self.path))
        if verdict.alive and not verdict.same_machine:
            raise LockError(
                f"{self.directory} is locked by {self._describe(owner)}, another host: its "
                f"{verdict.reason}; it is taken over once the lease runs out, or now with "
                f"`strabench run ... --break-lock` if that run is gone"
            )
        if verdict.alive:
            who = " (this process)" if owner["pid"] == os.getpid() else ""
            raise LockError(
                f"{self.directory} is locked by {self._describe(owner)}{who}: another run is "
                f"using it; wait for it to finish or use another output directory"
            )
        return verdict.reason

    def _remove_lock_temps(self, exclusive: bool) -> None:
        """Delete lock temp files killed acquisitions left here. Every acquisition creates its
        temp under the directory guard, so while we hold it exclusively none has a writer;
        without ``flock`` only old ones are removed."""
        cutoff = time.time() - (0.0 if exclusive else STALE_TEMP_AGE_S)
        for leftover in self.directory.glob(".lock.*.tmp"):
            if _LOCK_TEMP.fullmatch(leftover.name) and _mtime(leftover) <= cutoff:
                _remove_quietly(leftover)

    def _create(self, content: bytes) -> bool:
        """Create the lock file holding ``content`` atomically; False if it already exists."""
        tmp = self.directory / f".lock.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, content)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in _NO_HARD_LINKS:
                    raise
                return self._create_in_place(content)
        finally:
            _remove_quietly(tmp)
        return True

    def _create_in_place(self, content: bytes) -> bool:
        """The fallback without hard links: O_EXCL create, then write (a kill in between leaves
        an empty lock, which ``acquire`` treats as stale once it is old enough)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            _write_all(fd, content)
        except BaseException:
            os.close(fd)
            _remove_quietly(self.path)
            raise
        os.close(fd)
        return True

    def acquire(self) -> FileLock:
        """Take the lock (see the class doc); returns self."""
        if self.held:
            raise LockError(f"{self.path} is already held by this FileLock object")
        ensure_directory(self.directory)
        record = holder_record(lease_s=self.lease_s, heartbeat_s=self.heartbeat_s)
        content = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        try:
            with _directory_guard(self.directory) as exclusive:
                self._remove_lock_temps(exclusive)
                if not self._create(content):
                    # Under the guard nobody else is creating or writing a lock here, so an
                    # unreadable record is a dead creator's; without it, give a writer time.
                    owner = self._read_owner() if exclusive else self._wait_for_record()
                    reason = self._check_stale(owner)
                    self.took_over_stale = True
                    self.stale_owner = owner
                    log.warning(
                        "taking over stale lock %s from dead %s: %s",
                        self.path,
                        self._describe(owner) if owner else "owner",
                        reason,
                    )
                    _remove_quietly(self.path)
                    # Under the guard nobody can have re-created it; without flock another
                    # taker may have, and then the create fails loudly instead of two runs
                    # sharing the directory.
                    if not self._create(content):
                        raise LockError(
                            f"{self.directory}: another process took over the stale lock "
                            f"{self.path} at the same time"
                        )
                fsync_dir(self.directory)
        except OSError as err:
            raise write_error("create lock file", self.path, err) from err
        self._content = content
        self._start_heartbeat()
        return self

    def _start_heartbeat(self) -> None:
        self._stop_heartbeat.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, args=(self._content,), name=f"heartbeat {self.path}", daemon=True
        )
        self._heartbeat.start()

    def _beat(self, content: bytes) -> None:
        """Touch the lock file every ``heartbeat_s`` while it is still ours (see ``strabench.lease``)."""
        while not self._stop_heartbeat.wait(self.heartbeat_s):
            try:
                if self.path.read_bytes() != content:
                    raise FileNotFoundError
                os.utime(self.path)
            except FileNotFoundError:
                self.lost = True
                log.error("lock %s was taken over by another process while this one held it", self.path)
                return
            except OSError as err:  # a hiccup of a network filesystem: try again next beat
                log.warning("cannot refresh the heartbeat of %s: %s", self.path, describe_os_error(err))

    def release(self) -> None:
        """Delete the lock file if it is still ours (never someone else's)."""
        if self._content is None:
            return
        self._stop_heartbeat.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join()
            self._heartbeat = None
        with _directory_guard(self.directory):
            try:
                current = self.path.read_bytes()
            except FileNotFoundError:
                log.warning("lock file %s vanished before release", self.path)
            else:
                if current == self._content:
                    os.unlink(self.path)
                else:
                    log.warning("lock file %s was replaced by another process; leaving it", self.path)
        self._content = None

    def __enter__(self) -> FileLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:  # a short write is legal POSIX behaviour
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _mtime(path: Path) -> float:
    """Modification time, or +inf for a file that is gone (never "old enough" to delete)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return math.inf


def _locked_by_another_live_process(directory: Path) -> bool:
    """Whether ``directory/.lock`` may belong to a live process other than this one (which may
    then be writing there right now). Unsure counts as yes."""
    try:
        raw = (directory / ".lock").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    owner = _parse_lock_record(raw)
    age = time.time() - _mtime(directory / ".lock")
    if owner is None:  # being written without flock, or stale: stale once old
        return age < _UNREADABLE_LOCK_GRACE_S
    if owner["pid"] == os.getpid() and owner.get("hostname") == socket.gethostname():
        return False
    return judge(owner, age).alive


def describe_lock_owner(owner: dict[str, Any], path: PathLike) -> str:
    """'pid 12 on host (since ...; lock file PATH)' for messages about a lock's holder."""
    job = owner.get("job")
    job_text = f", SLURM job {job.get('id')}" if isinstance(job, dict) and job.get("id") else ""
    return f"pid {owner.get('pid')} on {owner.get('hostname')} (since {owner.get('started')}{job_text}; lock file {path})"


def inspect_lock(directory: PathLike) -> tuple[dict[str, Any] | None, Verdict | None]:
    """The record of ``directory/.lock`` and the verdict on its holder; (None, None) if unlocked.

    An unreadable record gives (None, a dead verdict).
    """
    path = Path(directory) / ".lock"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    owner = _parse_lock_record(raw)
    if owner is None:
        return None, Verdict(False, False, "unreadable lock record")
    return owner, judge(owner, time.time() - _mtime(path))


def break_lock(directory: PathLike) -> str | None:
    """Delete ``directory/.lock`` whoever holds it; returns what was broken (None: no lock).

    For a holder that cannot be checked from here (another host within its lease) when the
    user knows it is gone. A live process on this machine is refused (``LockError``): stop it
    instead, since it would go on writing into the directory.
    """
    directory = Path(directory)
    path = directory / ".lock"
    if not path.exists():
        return None
    with _directory_guard(directory):
        owner, verdict = inspect_lock(directory)
        if verdict is None:
            return None
        if owner is not None and verdict.alive and verdict.same_machine:
            raise LockError(
                f"--break-lock: {describe_lock_owner(owner, path)} is alive on this host "
                f"({verdict.reason}); stop that process instead of breaking its lock"
            )
        _remove_quietly(path)
    who = describe_lock_owner(owner, path) if owner is not None else f"an unreadable lock ({path})"
    state = "alive as far as can be told, " if verdict.alive else "stale, "
    return f"{who}: {state}{verdict.reason}"


def remove_stale_temps(directory: PathLike, *, min_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Delete the temp files that killed writes left under ``directory``; returns the ones removed.

    A SIGKILL during an atomic write leaves its hidden temp file (never a torn real file);
    nothing else would ever remove it. Only strabench's own temp names are touched
    (``.<name>.<12 hex>.tmp`` from ``write_temp_sibling``, ``.lock.<pid>.<8 hex>.tmp`` from
    ``FileLock``), and only where no live writer can own them: untouched for ``min_age_s``
    (a writer renames its temp right after the last write and fsync), and not in a directory
    locked by another live process (a training run checkpointing there). Call it while holding
    the lock of ``directory``, so that no other run of the same suite starts writing.
    """
    cutoff = time.time() - min_age_s
    removed: list[Path] = []
    for current, subdirs, files in os.walk(directory):
        here = Path(current)
        if _locked_by_another_live_process(here):
            subdirs.clear()  # its owner may write anywhere below
            continue
        for name in files:
            path = here / name
            if not (_WRITE_TEMP.fullmatch(name) or _LOCK_TEMP.fullmatch(name)) or _mtime(path) > cutoff:
                continue
            try:
                path.unlink()
            except FileNotFoundError:  # its writer renamed it after all
                continue
            removed.append(path)
    if removed:
        log.info("removed %d temp file(s) left by interrupted writes: %s", len(removed),
                 ", ".join(str(p) for p in removed))
    return removed


def acquire_lock(directory: PathLike, *, heartbeat_s: float = HEARTBEAT_S, lease_s: float = LEASE_S) -> FileLock:
    """Lock ``directory`` now; use the result as a context manager to release it.

    ``with acquire_lock(run_dir) as lock: ...`` -- ``lock.took_over_stale`` tells whether a
    dead run's lock was taken over. Raises ``LockError`` if a live process holds it.
    """
    return FileLock(directory, heartbeat_s=heartbeat_s, lease_s=lease_s).acquire()

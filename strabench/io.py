"""Crash-safe file I/O: atomic writes, append-only JSONL logs, a results-directory lock.

Benchmark runs are long and get killed (Ctrl-C, OOM killer, pre-empted jobs). Everything here
is designed so that a kill at any instant leaves either the old or the new version of a file,
never a torn one, and so that a dead run's lock does not block the next run forever.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

from strabench.errors import DataError, LockError

__all__ = [
    "FileLock",
    "JsonlContents",
    "acquire_lock",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_stream",
    "atomic_write_text",
    "describe_os_error",
    "fsync_dir",
    "read_jsonl",
    "replace_file",
    "sha256_file",
    "write_temp_sibling",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


# --- atomic writes ----------------------------------------------------------------------------


def fsync_dir(directory: PathLike) -> None:
    """Persist a directory entry (a rename or a new file) where the OS allows it.

    Without this a rename can be lost on power failure even though the file's data was synced.
    Windows cannot open directories, and some filesystems refuse fsync on them: those are
    skipped (with a debug log), since nothing better can be done there.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as err:
        log.debug("cannot open %s to fsync it: %s", directory, err)
        return
    try:
        os.fsync(fd)
    except OSError as err:
        log.debug("fsync of directory %s not supported: %s", directory, err)
    finally:
        os.close(fd)


def _remove_quietly(path: PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_temp_sibling(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a fully-synced temporary file next to ``path`` and return its name.

    The first half of an atomic write, exposed for callers (checkpoints) that must do something
    between "new data is safely on disk" and "new data replaces the old". The temp file lives in
    the same directory so the later rename never crosses filesystems; it is created with mode
    0o666 minus the umask, like a normal file. Removed again if ``write`` fails.
    """
    target = Path(path)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # 48 random bits collided: pick another name
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp


def replace_file(tmp: PathLike, path: PathLike) -> None:
    """Atomically move ``tmp`` over ``path`` and persist the rename (second half of a write).

    On failure the temp file is removed and ``path`` keeps its previous content.
    """
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(Path(path).parent)


def atomic_write_stream(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(handle)`` so that readers see the old or the new file only."""
    replace_file(write_temp_sibling(path, write), path)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, ``os.replace``)."""
    atomic_write_stream(path, lambda handle: handle.write(data))


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically; newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys, indent 2, trailing newline) atomically.

    Sorted keys make result files diffable across runs. NaN/inf are written as the
    non-standard ``NaN``/``Infinity`` tokens Python reads back, rather than failing a run at its
    very end because one metric was undefined.
    """
    atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=2) + "\n")


def sha256_file(path: PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large checkpoints need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --- JSON lines -------------------------------------------------------------------------------


def append_jsonl(path: PathLike, obj: Any) -> None:
    """Append one JSON record as a line and fsync it (metrics logs survive a kill).

    If the file ends in a partial line (its writer was killed mid-write), a newline is written
    first, so the new record never gets glued onto the fragment; ``read_jsonl`` skips the
    fragment. The record goes out in a single ``write`` on an ``O_APPEND`` descriptor.
    """
    line = (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = b"\n" + line
        view = memoryview(line)
        while view:  # a short write is legal POSIX behaviour; finish the line
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlContents(NamedTuple):
    """What ``read_jsonl`` found: the decoded records and how many lines it had to skip."""

    records: list[Any]
    skipped: int


def read_jsonl(path: PathLike) -> JsonlContents:
    """Read a JSONL file written by ``append_jsonl``, tolerating torn lines.

    A process killed mid-append leaves a partial last line; such lines (and any other line that
    is not valid JSON, e.g. a fragment a later append closed off) are skipped and counted in
    ``skipped`` so the caller can warn about them. Blank lines are ignored. A missing file is a
    ``DataError``.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    records: list[Any] = []
    skipped = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            skipped += 1
            log.warning("%s: skipping line %d, not valid JSON (torn write?)", path, number)
    return JsonlContents(records, skipped)


# --- directory lock ---------------------------------------------------------------------------

# A lock file that cannot be parsed is only trusted for this long: it is either being written
# right now (on filesystems without flock) or its creator died between create and write.
_UNREADABLE_LOCK_GRACE_S = 10.0


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live (non-zombie) process on this host."""
    import psutil

    if pid <= 0 or not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


@contextlib.contextmanager
def _directory_guard(directory: Path) -> Iterator[None]:
    """Serialise lock acquisition/takeover among processes via ``flock`` on the directory.

    The lock itself is the ``.lock`` file; this short-lived guard only makes "inspect the
    stale lock, delete it, create ours" one atomic step, so two processes that both find a
    stale lock cannot both take it over. Where ``flock`` is unavailable (Windows, some network
    filesystems) it degrades to the O_EXCL create alone.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            log.debug("flock on %s unavailable (%s); relying on O_EXCL only", directory, err)
        yield
    finally:
        os.close(fd)  # releases the flock


class FileLock:
    """Exclusive ownership of a directory via ``<directory>/.lock`` (JSON: pid, hostname, started).

    Two runs writing the same results directory would interleave their files. The lock file is
    created with ``O_CREAT | O_EXCL``; if it exists and its pid is alive on this host, acquiring
    raises ``LockError`` naming the pid and the file. If its pid is dead (a killed run), the
    lock is taken over: ``took_over_stale`` becomes True and ``stale_owner`` holds the dead
    owner's record (also logged as a warning), so the caller can say so. Not re-entrant: a second acquisition in the same process refuses too.

    Use ``with FileLock(dir) as lock:`` or ``with acquire_lock(dir) as lock:``; the lock is
    released on exit, exceptions included.
    """

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self.took_over_stale = False
        """True if acquiring replaced a dead run's lock."""
        self.stale_owner: dict[str, Any] | None = None
        """The dead owner's record (None if it was unreadable or there was none)."""
        self._content: bytes | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._content is not None

    def _describe(self, owner: dict[str, Any]) -> str:
        return (
            f"pid {owner.get('pid')} on {owner.get('hostname')} "
            f"(since {owner.get('started')}; lock file {self.path})"
        )

    def _read_owner(self) -> dict[str, Any] | None:
        """The current lock record, or None if the file is not a readable lock record."""
        try:
            owner = json.loads(self.path.read_bytes())
        except ValueError:
            return None
        if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
            return None
        return owner

    def _check_stale(self, owner: dict[str, Any] | None) -> None:
        """Return if the existing lock may be taken over; raise LockError if not."""
        if owner is None:
            age = time.time() - self.path.stat().st_mtime
            if age < _UNREADABLE_LOCK_GRACE_S:
                raise LockError(
                    f"{self.directory} is being locked by another process right now "
                    f"(lock file {self.path} is still being written); try again"
                )
            return  # its creator died between creating and writing it
        if owner.get("hostname") != socket.gethostname():
            raise LockError(
                f"{self.directory} is locked by {self._describe(owner)}, another host: cannot "
                f"check whether that run is alive; delete {self.path} if it is gone"
            )
        if _pid_alive(owner["pid"]):
            who = " (this process)" if owner["pid"] == os.getpid() else ""
            raise LockError(
                f"{self.directory} is locked by {self._describe(owner)}{who}: another run is "
                f"using it; wait for it to finish or use another output directory"
            )

    def acquire(self) -> FileLock:
        """Take the lock (see the class doc); returns self."""
        if self.held:
            raise LockError(f"{self.path} is already held by this FileLock object")
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        content = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        with _directory_guard(self.directory):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._read_owner()
                self._check_stale(owner)
                self.took_over_stale = True
                self.stale_owner = owner
                log.warning(
                    "taking over stale lock %s from dead %s",
                    self.path,
                    self._describe(owner) if owner else "owner (unreadable lock record)",
                )
                _remove_quietly(self.path)
                # Under the guard nobody can have re-created it; without flock another taker
                # may have, and then O_EXCL fails loudly instead of two runs sharing the dir.
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise LockError(
                        f"{self.directory}: another process took over the stale lock "
                        f"{self.path} at the same time"
                    ) from None
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                _remove_quietly(self.path)
                raise
            os.close(fd)
            fsync_dir(self.directory)
        self._content = content
        return self

    def release(self) -> None:
        """Delete the lock file if it is still ours (never someone else's)."""
        if self._content is None:
            return
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


def acquire_lock(directory: PathLike) -> FileLock:
    """Lock ``directory`` now; use the result as a context manager to release it.

    ``with acquire_lock(run_dir) as lock: ...`` -- ``lock.took_over_stale`` tells whether a
    dead run's lock was taken over. Raises ``LockError`` if a live process holds it.
    """
    return FileLock(directory).acquire()


def describe_os_error(err: OSError) -> str:
    """A short human cause for an OSError ("disk full", ...) for one-line error messages."""
    if err.errno == errno.ENOSPC:
        return "no space left on device (disk full)"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return err.strerror or str(err)


def read_json_object(path: PathLike) -> dict[str, Any] | None:
    """A JSON object from a file written atomically; missing, unreadable or not an object -> None."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None

"""Crash-safe file I/O: atomic writes, append-only JSONL logs, typed reading of our own files.

Benchmark runs are long and get killed (Ctrl-C, OOM killer, pre-empted jobs). Everything here
is designed so that a kill at any instant leaves either the old or the new version of a file,
never a torn one (at most a hidden temp file, which ``strabench.locks.remove_stale_temps``
sweeps later). A write that fails (disk full, read-only) is a one-line ``WriteError`` naming the
file. The results-directory lock is ``strabench.locks``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

from strabench.errors import DataError, WriteError

__all__ = [
    "as_dict",
    "as_int",
    "as_number",
    "as_text",
    "parse_number",
    "read_csv_records",
    "JsonlContents",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_stream",
    "atomic_write_text",
    "check_regular_target",
    "describe_os_error",
    "ensure_directory",
    "fsync_dir",
    "open_for_append",
    "read_jsonl",
    "replace_file",
    "sha256_file",
    "write_error",
    "write_temp_sibling",
    "write_temp_sibling_hashed",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]



def write_error(action: str, path: PathLike, err: OSError) -> WriteError:
    """A one-line ``WriteError`` ("cannot write PATH: disk full") keeping ``err``'s errno/filename."""
    error = WriteError(f"cannot {action} {os.fspath(path)}: {describe_os_error(err)}")
    error.errno, error.strerror, error.filename = err.errno, err.strerror, err.filename
    return error


def ensure_directory(path: PathLike) -> Path:
    """``mkdir -p path``; a failure (a file in the way, read-only, disk full) is a ``WriteError``."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error("create directory", directory, err) from err
    return directory


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
    return _write_temp_sibling(path, write, None)[0]


def write_temp_sibling_hashed(path: PathLike, write: Callable[[IO[bytes]], None]) -> tuple[Path, str]:
    """``write_temp_sibling``, and the hex SHA-256 of the file it wrote, taken from the bytes as
    they were written (a large checkpoint is not read back to be hashed); when ``write`` seeks,
    the file is read and hashed instead."""
    digest = hashlib.sha256()
    tmp, seeked = _write_temp_sibling(path, write, digest)
    return tmp, sha256_file(tmp) if seeked else digest.hexdigest()


def _write_temp_sibling(path: PathLike, write: Callable[[IO[bytes]], None], digest: Any) -> tuple[Path, bool]:
    """The temp file ``write`` filled (``digest`` fed with every byte written, when given), and
    whether ``write`` seeked (then ``digest`` is not the file's)."""
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
            guarded = _RecordingWriter(handle, digest)
            try:
                write(guarded)  # type: ignore[arg-type]
            except OSError:
                raise
            except Exception as exc:
                if guarded.error is None:
                    raise
                # torch.save (a C++ writer) turns the OSError of a full disk into
                # RuntimeError("unexpected pos ..."): report what the disk said
                raise guarded.error from exc
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp, guarded.seeked


class _RecordingWriter:
    """A binary file handle that remembers the first OSError its ``write`` raised.

    Writers that call ``write`` from C++ (``torch.save``'s zip writer) replace that error by
    their own RuntimeError; with the original kept, ``write_temp_sibling`` can still say "no
    space left on device" and the caller's one-line ``WriteError`` names the real cause. With a
    ``digest`` it hashes what is written, and notes a ``seek`` (after which it is not the file's).
    """

    def __init__(self, handle: IO[bytes], digest: Any = None) -> None:
        self._handle = handle
        self._digest = digest
        self.error: OSError | None = None
        self.seeked = False

    def write(self, data: Any) -> int:
        try:
            written = self._handle.write(data)
        except OSError as err:
            if self.error is None:
                self.error = err
            raise
        if self._digest is not None:
            self._digest.update(data)
        return written

    def seek(self, *args: Any) -> int:
        self.seeked = True
        return self._handle.seek(*args)

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as err:
            if self.error is None:
                self.error = err
            raise

    def __getattr__(self, name: str) -> Any:  # tell, seek, fileno, ... as the real handle
        return getattr(self._handle, name)


def replace_file(tmp: PathLike, path: PathLike) -> None:
    """Atomically move ``tmp`` over ``path`` and persist the rename (second half of a write).

    On failure the temp file is removed and ``path`` keeps its previous content. A ``path``
    that is not a regular file is refused (``check_regular_target``), never replaced.
    """
    try:
        check_regular_target(path)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_dir(Path(path).parent)


_KINDS = (
    (stat.S_ISLNK, "symbolic link"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"),
)


def check_regular_target(path: PathLike) -> None:
    """Refuse to write ``path`` unless it is a regular file or does not exist (``WriteError``).

    An atomic write *replaces* its target: given ``/dev/null``, a named pipe or a symbolic link
    (``--out report.md`` pointing elsewhere, or a link planted in a shared results folder) it
    would put a regular file in its place -- for root, over a device node. Neither replacing the
    thing nor writing through the link is what anyone asked for, so the write is refused.
    Only the last path component is looked at (a results directory that is a link is fine).
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # missing (the usual case), or unreadable: the write itself reports that
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    raise WriteError(f"cannot write {os.fspath(path)}: it is a {kind}, not a regular file; "
                     "strabench writes only regular files (give another path, or remove it first)")


def open_for_append(path: PathLike) -> IO[bytes]:
    """``open(path, "ab")`` for a log, refusing a target that is not a regular file (a symbolic
    link planted in a results folder would make the log grow some other file)."""
    check_regular_target(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        raise write_error("open", path, err) from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in after the check
        os.close(fd)
        check_regular_target(path)
        raise WriteError(f"cannot write {os.fspath(path)}: not a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def atomic_write_stream(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(handle)`` so that readers see the old or the new file only.

    An OSError (disk full, read-only, ...) becomes a ``WriteError`` naming ``path``; the old
    file, if any, is untouched and no temp file is left. A ``path`` that exists and is not a
    regular file (a device, a symbolic link) is refused, never replaced (``check_regular_target``).
    """
    check_regular_target(path)
    try:
        replace_file(write_temp_sibling(path, write), path)
    except WriteError:
        raise
    except OSError as err:
        raise write_error("write", path, err) from err


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
    fragment. The record goes out in a single ``write`` on an ``O_APPEND`` descriptor. An
    OSError becomes a ``WriteError`` naming ``path``.
    """
    line = (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")
    check_regular_target(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), 0o666)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in after the check
                raise WriteError(f"cannot append to {os.fspath(path)}: not a regular file")
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)
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
    except WriteError:
        raise
    except OSError as err:
        raise write_error("append to", path, err) from err


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
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; absurd nesting
            skipped += 1
            log.warning("%s: skipping line %d, not valid JSON (torn write?)", path, number)
    return JsonlContents(records, skipped)


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
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


# --- typed reading of our own files ---------------------------------------------------------------
# A results directory is read back long after it was written, maybe copied, edited or damaged.
# These accessors turn whatever a JSON/CSV field holds into the type the reader needs, or None,
# so one damaged entry costs that entry, not the whole report (no TypeError three calls later).

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object (dict), else an empty dict."""
    return value if isinstance(value, dict) else {}


def as_text(value: Any, *, limit: int = 500) -> str | None:
    """A string field as printable one-line text: control characters (newlines, ANSI escapes)
    shown as ``?``, cut to ``limit`` characters; None if it is not a string."""
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub("?", value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_number(value: Any) -> float | int | None:
    """A finite number (int or float, not bool), else None. Integers too big for a float
    (10**400) are None rather than an OverflowError later; numeric strings are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else None
    return value if math.isfinite(value) else None


def as_int(value: Any, *, minimum: int | None = None) -> int | None:
    """An integer field (seed, epochs): an int, or an integral finite float, within +-2**53."""
    number = as_number(value)
    if number is None or (isinstance(number, float) and not number.is_integer()):
        return None
    number = int(number)
    return None if minimum is not None and number < minimum else number


def parse_number(text: Any) -> float | None:
    """A CSV cell as a finite float, else None ('inf', 'nan', '1e400', '', text)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 64:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_csv_records(path: PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file of ours (header row, then records) as (columns, records of str -> str).

    Refuses in one line (``DataError`` naming the file) what cannot be read as text CSV: bytes
    that are not UTF-8, a malformed quote or a field over the csv module's size limit. Short
    rows get "" for their missing cells; extra cells are dropped; duplicate or empty column
    names keep their first occurrence.
    """
    import csv
    import io

    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text csv ({exc.reason} at byte {exc.start}); was it edited in another encoding?") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: malformed csv ({' '.join(str(exc).split())})") from None
    if not rows:
        return [], []
    columns = [c for c in dict.fromkeys(rows[0]) if c]
    index = {c: rows[0].index(c) for c in columns}
    records = [{c: (row[i] if i < len(row) else "") for c, i in index.items()} for row in rows[1:] if any(cell.strip() for cell in row)]
    return columns, records

"""Compile a C library once per user, and load it only from where no one else can write.

The fused kernels are built on first use and cached, so the cache holds code that will run as
whoever imports strabench. The rules:

- The cache folder (``<cache>/kernels``, ``strabench.cache.kernel_cache_dir``) is created with mode
  0700. It is used only if it is a real folder (not a symbolic link) owned by this user; a
  looser mode on a folder of ours is tightened to 0700; another user's folder is refused, and
  the kernels are not used (``status()`` says why). Nothing is ever read from the system temp
  folder.
- The folder is opened once, then checked, and every file in it is reached through that open
  folder (``openat``), never by path again: renaming a parent folder after the check changes
  nothing.
- A library is trusted only if it and its sidecar ``<library>.sha256`` are regular files (not
  links, FIFOs or devices) owned by this user that no one else can write, and the library's
  sha256 is the one the sidecar records (written by the build that made it). Anything else --
  missing sidecar, truncated or garbage library, a planted file -- is rebuilt, with one line
  saying so, instead of being loaded (a truncated library, once mapped, crashes the process
  with SIGBUS at the first call that touches its missing pages).
- What is loaded is exactly the bytes that were hashed: they are written to a new file with a
  unique name in the same folder, loaded through ``/proc/self/fd/<folder>/<name>`` (the folder's
  path where there is no ``/proc``) and removed. The unique name also keeps the dynamic loader
  from handing back an earlier library that was loaded under the same name.

A build holds the folder's lock (``fcntl.flock`` on ``.build.lock``), so concurrent processes
(DDP ranks) compile once; it first removes the temp files that killed builds or loads left
(``*.so.*.tmp`` untouched for ``STALE_TMP_AGE_S``), as the dataset cache does with its
half-written generations.

Standard library only (no torch), so a build step can run it without importing torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import platform
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are not serialised
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "KernelUnavailable", "LOCK_NAME", "STALE_TMP_AGE_S", "compiler", "compiler_id", "ensure_built", "library_name",
    "load", "open_private_dir", "remove_stale_temps",
]

log = logging.getLogger(__name__)

#: A temp file of a build or load untouched this long belongs to a dead process (a build writes
#: its temp file under the folder's lock, a load removes its copy within milliseconds).
STALE_TMP_AGE_S = 60.0
LOCK_NAME = ".build.lock"
_MAX_LIBRARY_BYTES = 256 * 2**20
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_NOFOLLOW | _O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the library's name must not hang the process
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC


class KernelUnavailable(RuntimeError):
    """The kernels cannot be built or loaded here (the message says why)."""


class _Untrusted(Exception):
    """A cached file that must not be loaded (the message says why)."""


def _uid() -> int:
    return os.geteuid()


def compiler() -> str | None:
    """``$CC``, else the first of cc, gcc, clang on the PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def compiler_id(cc: str) -> str:
    """The first line of ``cc --version`` (part of the cache key: another compiler, another build)."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelUnavailable(f"{cc} --version failed: {exc}") from exc
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else cc


def library_name(stem: str, source: bytes, cc_id: str, flags: tuple[str, ...]) -> str:
    """``<stem>-<key>.so``, the key a hash of the source, compiler, flags and machine."""
    key = hashlib.sha256(b"\0".join([source, cc_id.encode(), " ".join(flags).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    return f"{stem}-{key}.so"


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def open_private_dir(path: Path) -> int:
    """An open descriptor of the folder ``path``, created 0700 if absent; refused (KernelUnavailable)
    unless it is a real folder owned by this user. A looser mode is tightened to 0700."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    except OSError as exc:
        raise KernelUnavailable(f"cannot create the kernel cache {path}: {_describe(exc)}") from None
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise KernelUnavailable(f"the kernel cache {path} is a symbolic link or not a folder: not loading code "
                                    "from it") from None
        raise KernelUnavailable(f"cannot open the kernel cache {path}: {_describe(exc)}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != _uid():
            raise KernelUnavailable(f"the kernel cache {path} belongs to uid {st.st_uid}, not to you (uid {_uid()}): "
                                    "not loading code from it")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except KernelUnavailable:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise KernelUnavailable(f"cannot make the kernel cache {path} private (0700): {_describe(exc)}") from None
    return fd


def _read_trusted(dirfd: int, name: str, limit: int, *, tighten: bool = False) -> bytes | None:
    """The bytes of ``name`` if it is a regular file of ours that no one else can write; None if
    absent. ``tighten``: make it 0600 first (a file this process just had compiled)."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Untrusted(f"{name} is a symbolic link") from None
        raise _Untrusted(f"{name} cannot be opened ({_describe(exc)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Untrusted(f"{name} is not a regular file")
        if st.st_uid != _uid():
            raise _Untrusted(f"{name} belongs to uid {st.st_uid}, not to you")
        if tighten:
            os.fchmod(fd, 0o600)
        elif st.st_mode & 0o022:
            raise _Untrusted(f"{name} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
        if st.st_size > limit:
            raise _Untrusted(f"{name} is larger than {limit} bytes")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _Untrusted(f"{name} is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise _Untrusted(f"{name} cannot be read ({_describe(exc)})") from None
    finally:
        os.close(fd)


def _sidecar(name: str) -> str:
    return f"{name}.sha256"


def _verified(dirfd: int, name: str) -> tuple[bytes | None, str]:
    """(the library's bytes if its sidecar vouches for them, else None; why not, "" when it is simply absent)."""
    try:
        data = _read_trusted(dirfd, name, _MAX_LIBRARY_BYTES)
        if data is None:
            return None, ""
        recorded = _read_trusted(dirfd, _sidecar(name), 4096)
    except _Untrusted as exc:
        return None, str(exc)
    if recorded is None:
        return None, f"{name} has no recorded checksum ({_sidecar(name)})"
    if not data:
        return None, f"{name} is empty"
    words = recorded.split()
    digest = hashlib.sha256(data).hexdigest()
    if not words or words[0].decode("ascii", "replace") != digest:
        return None, f"{name} is damaged (its sha256 is not the one its build recorded; {len(data)} bytes)"
    return data, ""


def _write_new(dirfd: int, name: str, data: bytes) -> None:
    fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dirfd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(name: str) -> str:
    return f"{name}.{secrets.token_hex(8)}.tmp"


def _is_temp(name: str) -> bool:
    return name.endswith(".tmp") and ".so." in name


def remove_stale_temps(dirfd: int, *, min_age_s: float = STALE_TMP_AGE_S) -> list[str]:
    """Remove the ``*.so.*.tmp`` files of killed builds and loads (untouched for ``min_age_s``);
    only those names. Returns the names removed."""
    cutoff = time.time() - min_age_s
    removed = []
    with os.scandir(dirfd) as entries:
        names = [e.name for e in entries if _is_temp(e.name)]
    for name in names:
        try:
            if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mtime > cutoff:
                continue
            os.unlink(name, dir_fd=dirfd)
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed


@contextlib.contextmanager
def _build_lock(dirfd: int) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600, dir_fd=dirfd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _folder_prefix(dirfd: int, path: Path, pid: int | None = None) -> str:
    """A path prefix that reaches the open folder ``dirfd`` itself (``/proc/<pid>/fd/<n>``), or
    ``path`` where there is no /proc."""
    proc = f"/proc/{'self' if pid is None else pid}/fd/{dirfd}"
    return proc if os.path.isdir(proc) else str(path)


def _compile(cc: str, cc_id: str, source: Path, flags: tuple[str, ...], dirfd: int, folder: Path, name: str) -> bytes:
    """Compile ``source`` into the folder as ``name`` (and record its sha256 beside it); its bytes."""
    tmp = _temp_name(name)
    # the compiler is another process: it reaches our open folder through /proc/<our pid>/fd
    target = f"{_folder_prefix(dirfd, folder, os.getpid())}/{tmp}"
    try:
        try:
            out = subprocess.run([cc, *flags, str(source), "-o", target], capture_output=True, text=True,
                                 timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise KernelUnavailable(f"building the kernels with {cc} failed: {exc}") from exc
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise KernelUnavailable(f"{cc_id} could not build the kernels: {last}")
        try:
            data = _read_trusted(dirfd, tmp, _MAX_LIBRARY_BYTES, tighten=True)
        except _Untrusted as exc:
            raise KernelUnavailable(f"the compiled kernels cannot be checked: {exc}") from None
        if not data:
            raise KernelUnavailable(f"{cc_id} wrote no library")
        side = _temp_name(_sidecar(name))
        try:
            _write_new(dirfd, side, f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode())
            os.rename(side, _sidecar(name), src_dir_fd=dirfd, dst_dir_fd=dirfd)
            os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)  # atomic: a reader sees no file or a whole one
            os.fsync(dirfd)
        except OSError as exc:
            raise KernelUnavailable(f"cannot write the kernels into {folder}: {_describe(exc)}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(side, dir_fd=dirfd)
        return data
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)


def _discard(dirfd: int, folder: Path, name: str) -> None:
    """Remove an untrusted library and its sidecar (the entries: a link is removed, not followed)."""
    for entry in (name, _sidecar(name)):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(entry, dir_fd=dirfd, follow_symlinks=False).st_mode):
                shutil.rmtree(f"{_folder_prefix(dirfd, folder)}/{entry}")
            else:
                os.unlink(entry, dir_fd=dirfd)


def _dlopen(dirfd: int, folder: Path, name: str, data: bytes) -> ctypes.CDLL:
    """Load exactly ``data``: written to a fresh uniquely named file in the folder, loaded, removed."""
    tmp = _temp_name(name)
    try:
        _write_new(dirfd, tmp, data)
        return ctypes.CDLL(f"{_folder_prefix(dirfd, folder)}/{tmp}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)


def _built(source: Path, flags: tuple[str, ...], folder: Path, stem: str) -> tuple[int, str, bytes, str]:
    """(open folder, library name, verified bytes, note): the cached build, or a new one."""
    cc = compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler found (set CC, or install gcc/clang)")
    cc_id = compiler_id(cc)
    name = library_name(stem, source.read_bytes(), cc_id, flags)
    dirfd = open_private_dir(folder)
    try:
        data, why = _verified(dirfd, name)
        note = ""
        if data is None:
            with _build_lock(dirfd):
                data, why = _verified(dirfd, name)  # another process may have built it while we waited
                if data is None:
                    remove_stale_temps(dirfd)
                    if why:
                        _discard(dirfd, folder, name)
                    data = _compile(cc, cc_id, source, flags, dirfd, folder, name)
                    if why:
                        note = f"rebuilt the kernels: the cached {why}"
                        log.warning("strabench: %s", note)
        return dirfd, name, data, note
    except BaseException:
        os.close(dirfd)
        raise


def ensure_built(source: Path, flags: tuple[str, ...], folder: Path, stem: str) -> tuple[Path, str]:
    """Build ``source`` into ``folder`` unless a verified build is there; (its path, note)."""
    dirfd, name, _data, note = _built(source, flags, folder, stem)
    os.close(dirfd)
    return folder / name, note


def load(source: Path, flags: tuple[str, ...], folder: Path, stem: str) -> tuple[ctypes.CDLL, str]:
    """The library built from ``source`` with ``flags``, loaded from the verified cache in ``folder``
    (built there first if absent or untrusted); (library, note: what was repaired, or "")."""
    dirfd, name, data, note = _built(source, flags, folder, stem)
    try:
        return _dlopen(dirfd, folder, name, data), note
    except OSError as exc:
        raise KernelUnavailable(f"{name} was built but cannot be loaded: {exc}") from None
    finally:
        os.close(dirfd)

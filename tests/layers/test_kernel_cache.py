"""The kernel cache loads no code another user could have written, and survives damage.

Hostile tests: a planted library whose constructor writes a marker file is put in every place
the loader looks (and the place it used to look: the system temp folder), under the exact name
the loader wants, with or without a forged checksum, as a link, as another user's file, in a
foreign or linked folder. The control test shows the payload does run when loaded directly;
through the loader it never does. Damaged caches (truncated, garbage, empty, lost or forged
checksums) are detected and rebuilt, never loaded. The loader is exercised on a small probe
library (compiled in milliseconds); the last tests run the real kernels' loader in a fresh
process.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from strabench.layers import _kernel_cache
from strabench.layers._kernel_cache import KernelUnavailable

CC = _kernel_cache.compiler()
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler: the loader has nothing to build")

FLAGS = ("-O1", "-fPIC", "-shared")
STEM = "probe"
PROBE = "int probe_value(void) { return 42; }\n"
PAYLOAD = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void payload(void) {
    const char *marker = getenv("STRABENCH_TEST_MARKER");
    if (marker) { FILE *f = fopen(marker, "w"); if (f) { fputs("payload ran\n", f); fclose(f); } }
}
int probe_value(void) { return 666; }
"""
ROOT = os.geteuid() == 0
NOBODY = 65534


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    source = tmp_path / "probe.c"
    source.write_text(PROBE)
    return source


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(a library whose constructor writes the marker, the marker's path: absent)."""
    source = tmp_path / "payload.c"
    source.write_text(PAYLOAD)
    lib = tmp_path / "payload.so"
    subprocess.run([CC, *FLAGS, str(source), "-o", str(lib)], check=True, capture_output=True)
    marker = tmp_path / "marker"
    monkeypatch.setenv("STRABENCH_TEST_MARKER", str(marker))
    return lib, marker


def _name(source: Path) -> str:
    return _kernel_cache.library_name(STEM, source.read_bytes(), _kernel_cache.compiler_id(CC), FLAGS)


def _load(source: Path, folder: Path) -> tuple[int, str]:
    lib, note = _kernel_cache.load(source, FLAGS, folder, STEM)
    lib.probe_value.restype = ctypes.c_int
    return lib.probe_value(), note


def _checksum(data: bytes, name: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


def _give_away(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def test_control_the_planted_library_runs_its_payload_when_loaded_directly(planted) -> None:
    lib, marker = planted
    loaded = ctypes.CDLL(str(lib))
    assert marker.read_text() == "payload ran\n"
    assert loaded.probe_value() == 666


# Each arranges a planted library where the loader might take it, in the cache folder ``kernels``
# (which may not exist yet); the loader must then build and load its own probe, or refuse.
def _plant_in_temp_folder(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    old = tmp / "systemtmp" / f"strabench-kernels-{os.geteuid()}"  # where earlier versions looked first
    old.mkdir(parents=True)
    shutil.copy(lib, old / name)
    (old / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))


def _plant_without_checksum(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    shutil.copy(lib, kernels / name)


def _plant_writable_by_others(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    shutil.copy(lib, kernels / name)
    (kernels / name).chmod(0o666)
    (kernels / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))


def _plant_forged_checksum_writable_by_others(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    shutil.copy(lib, kernels / name)
    (kernels / name).chmod(0o600)
    side = kernels / f"{name}.sha256"
    side.write_text(_checksum(lib.read_bytes(), name))
    side.chmod(0o646)


def _plant_as_link(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    (kernels / name).symlink_to(lib)
    (kernels / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))


def _plant_checksum_as_link(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    shutil.copy(lib, kernels / name)
    (kernels / name).chmod(0o600)
    forged = tmp / "forged.sha256"
    forged.write_text(_checksum(lib.read_bytes(), name))
    (kernels / f"{name}.sha256").symlink_to(forged)


def _plant_as_another_users_files(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o777)  # as a loose folder of ours might have been before
    kernels.chmod(0o777)
    shutil.copy(lib, kernels / name)
    (kernels / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))
    for path in (kernels / name, kernels / f"{name}.sha256"):
        path.chmod(0o644)
        _give_away(path)


def _plant_as_fifo(kernels: Path, name: str, lib: Path, tmp: Path) -> None:
    kernels.mkdir(mode=0o700)
    os.mkfifo(kernels / name)  # opening it for reading would block: it must not hang the loader
    (kernels / f"{name}.sha256").write_text(_checksum(b"", name))  # what reading it gives


PLANTED_BESIDE_OURS = {
    "old temp-dir location": _plant_in_temp_folder,
    "cache, no checksum": _plant_without_checksum,
    "cache, library writable by others": _plant_writable_by_others,
    "cache, forged checksum writable by others": _plant_forged_checksum_writable_by_others,
    "cache, library is a link": _plant_as_link,
    "cache, checksum is a link": _plant_checksum_as_link,
    "cache, another user's files in a loose folder": _plant_as_another_users_files,
    "cache, a FIFO under the name": _plant_as_fifo,
}


@pytest.mark.parametrize("plant", list(PLANTED_BESIDE_OURS.values()), ids=list(PLANTED_BESIDE_OURS))
def test_a_planted_library_is_never_loaded_the_loader_builds_its_own(
    plant, probe, planted, tmp_path, monkeypatch
) -> None:
    if plant is _plant_as_another_users_files and not ROOT:
        pytest.skip("giving a file to another user needs root")
    lib, marker = planted
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systemtmp"))
    kernels = tmp_path / "cache" / "kernels"
    kernels.parent.mkdir()
    name = _name(probe)
    plant(kernels, name, lib, tmp_path)
    value, _note = _load(probe, kernels)
    assert value == 42, "the loader returned the planted library"
    assert not marker.exists(), "the planted library's constructor ran"
    assert stat.S_IMODE(kernels.stat().st_mode) == 0o700
    data = (kernels / name).read_bytes()
    assert (kernels / f"{name}.sha256").read_text() == _checksum(data, name)


def _foreign_folder(kernels: Path, name: str, lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels.mkdir(mode=0o700)
    shutil.copy(lib, kernels / name)
    (kernels / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))
    if ROOT:
        for path in (kernels / name, kernels / f"{name}.sha256", kernels):
            _give_away(path)
    else:  # the loader sees the folder (and everything in it) as someone else's
        monkeypatch.setattr(_kernel_cache, "_uid", lambda: os.geteuid() + 1)


def _linked_folder(kernels: Path, name: str, lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = kernels.parent / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shutil.copy(lib, elsewhere / name)
    (elsewhere / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))
    kernels.symlink_to(elsewhere)


@pytest.mark.parametrize("arrange", [_foreign_folder, _linked_folder], ids=["another user's folder", "linked folder"])
def test_a_cache_folder_that_is_not_ours_is_refused_and_nothing_is_loaded(
    arrange, probe, planted, tmp_path, monkeypatch
) -> None:
    lib, marker = planted
    kernels = tmp_path / "cache" / "kernels"
    kernels.parent.mkdir()
    arrange(kernels, _name(probe), lib, monkeypatch)
    with pytest.raises(KernelUnavailable, match="not loading code from it"):
        _load(probe, kernels)
    assert not marker.exists()


def test_the_cache_folder_is_created_private_and_a_loose_one_of_ours_is_tightened(probe, tmp_path) -> None:
    kernels = tmp_path / "cache" / "kernels"
    assert _load(probe, kernels) == (42, "")
    assert stat.S_IMODE(kernels.stat().st_mode) == 0o700
    name = _name(probe)
    assert sorted(p.name for p in kernels.iterdir()) == sorted([_kernel_cache.LOCK_NAME, name, f"{name}.sha256"])
    for path in (kernels / name, kernels / f"{name}.sha256"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0
    kernels.chmod(0o755)
    stamp = (kernels / name).stat().st_mtime_ns
    assert _load(probe, kernels) == (42, "")
    assert stat.S_IMODE(kernels.stat().st_mode) == 0o700
    assert (kernels / name).stat().st_mtime_ns == stamp  # verified and reused, not rebuilt


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _lose_checksum(path: Path) -> None:
    Path(f"{path}.sha256").unlink()


def _garbage_checksum(path: Path) -> None:
    Path(f"{path}.sha256").write_bytes(b"\xff\x00 not a digest")


DAMAGE = {"truncated": _truncate, "garbage": _garbage, "empty": _empty, "one flipped byte": _flip_one_byte,
          "lost checksum": _lose_checksum, "garbage checksum": _garbage_checksum}


@pytest.mark.parametrize("damage", list(DAMAGE.values()), ids=list(DAMAGE))
def test_a_damaged_cached_library_is_detected_and_rebuilt_with_one_line(damage, probe, tmp_path, caplog) -> None:
    kernels = tmp_path / "kernels"
    _load(probe, kernels)
    lib = kernels / _name(probe)
    damage(lib)
    with caplog.at_level(logging.WARNING, logger=_kernel_cache.__name__):
        value, note = _load(probe, kernels)
    assert value == 42
    assert note.startswith("rebuilt the kernels: the cached probe-") and "\n" not in note
    assert [r.getMessage() for r in caplog.records] == [f"strabench: {note}"]
    assert Path(f"{lib}.sha256").read_text() == _checksum(lib.read_bytes(), lib.name)
    caplog.clear()
    assert _load(probe, kernels) == (42, "")  # repaired: no second rebuild
    assert not caplog.records


def test_killed_builds_temp_files_are_swept_when_old_and_nothing_else(probe, tmp_path) -> None:
    kernels = tmp_path / "kernels"
    kernels.mkdir(mode=0o700)
    old = time.time() - 2 * _kernel_cache.STALE_TMP_AGE_S
    stale = [kernels / "local_kernel-0123456789abcdef.so.1f2e3d4c5b6a7988.tmp",
             kernels / "local_kernel-0123456789abcdef.so.sha256.aa00bb11cc22dd33.tmp"]
    fresh = kernels / "local_kernel-0123456789abcdef.so.0000000000000000.tmp"
    other = [kernels / "notes.tmp", kernels / "local_kernel-0123456789abcdef.so"]
    for path in [*stale, fresh, *other]:
        path.write_bytes(b"x")
    for path in [*stale, *other]:
        os.utime(path, (old, old))
    _load(probe, kernels)  # a build: it sweeps first
    left = {p.name for p in kernels.iterdir()}
    assert not {p.name for p in stale} & left
    assert {fresh.name, *(p.name for p in other)} <= left


def test_concurrent_first_uses_compile_once(probe, tmp_path, monkeypatch) -> None:
    compiles = []
    real = _kernel_cache._compile

    def counted(*args, **kwargs):
        compiles.append(1)
        time.sleep(0.2)  # widen the window in which a second process would start its own build
        return real(*args, **kwargs)

    monkeypatch.setattr(_kernel_cache, "_compile", counted)
    kernels = tmp_path / "kernels"
    values: list[int] = []
    threads = [threading.Thread(target=lambda: values.append(_load(probe, kernels)[0])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [42, 42, 42] and len(compiles) == 1


def test_a_build_that_fails_is_one_reason_and_leaves_nothing(tmp_path) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int probe_value(void) { return }\n")
    kernels = tmp_path / "kernels"
    with pytest.raises(KernelUnavailable, match="could not build the kernels: ") as info:
        _kernel_cache.load(broken, FLAGS, kernels, STEM)
    assert "\n" not in str(info.value)
    assert {p.name for p in kernels.iterdir()} == {_kernel_cache.LOCK_NAME}


# --------------------------------------------------------------------------------------------
# the real kernels, in a fresh process: a damaged cache costs a rebuild and one line, never a crash

_STATUS = "from strabench.layers import _local_kernel as k; print(k.status())"


def _real_cache() -> tuple[Path, str]:
    """The verified real kernel library of this machine (built once per machine and source)."""
    from strabench.layers import _local_kernel

    path = _local_kernel.build()
    return path, path.name


@pytest.fixture
def fake_compiler(tmp_path: Path) -> tuple[Path, Path]:
    """A ``$CC`` that reports the real compiler's version (so the cache key is the real one) and
    "compiles" by copying the library a real compile produced: a rebuild costs no compile time."""
    path, _name = _real_cache()
    built = tmp_path / "built.so"
    shutil.copy(path, built)
    version = _kernel_cache.compiler_id(CC)
    script = tmp_path / "cc"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
        'while [ $# -gt 1 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done\n'
        f'cp "{built}" "$out"\n'
    )
    script.chmod(0o755)
    cache = tmp_path / "cache"
    (cache / "kernels").mkdir(parents=True, mode=0o700)
    return script, cache


@pytest.mark.parametrize("damage", [_truncate, _garbage, _empty], ids=["truncated", "garbage", "empty"])
def test_real_kernels_a_damaged_cache_is_rebuilt_in_a_fresh_process(damage, fake_compiler) -> None:
    script, cache = fake_compiler
    path, name = _real_cache()
    shutil.copy(path, cache / "kernels" / name)
    shutil.copy(f"{path}.sha256", cache / "kernels" / f"{name}.sha256")
    damage(cache / "kernels" / name)
    env = {**os.environ, "CC": str(script), "STRABENCH_CACHE": str(cache), "STRABENCH_FUSED_KERNEL": "1"}
    env.pop("STRABENCH_KERNEL_CACHE", None)  # the kernels under that cache
    out = subprocess.run([sys.executable, "-c", _STATUS], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]  # a mapped truncated library dies of SIGBUS (-7)
    assert out.stdout.startswith("fused C kernel (") and "rebuilt the kernels" in out.stdout
    warned = [line for line in out.stderr.splitlines() if "strabench:" in line]
    assert len(warned) == 1 and f"the cached {name} is " in warned[0]
    assert (cache / "kernels" / name).read_bytes() == path.read_bytes()


def test_real_kernels_a_planted_library_in_the_old_temp_location_is_never_loaded(fake_compiler, planted, tmp_path) -> None:
    script, cache = fake_compiler
    lib, marker = planted
    _path, name = _real_cache()
    systemtmp = tmp_path / "systemtmp"
    old = systemtmp / f"strabench-kernels-{os.geteuid()}"
    old.mkdir(parents=True)
    shutil.copy(lib, old / name)
    (old / f"{name}.sha256").write_text(_checksum(lib.read_bytes(), name))
    env = {**os.environ, "CC": str(script), "STRABENCH_CACHE": str(cache), "TMPDIR": str(systemtmp),
           "STRABENCH_FUSED_KERNEL": "1"}
    env.pop("STRABENCH_KERNEL_CACHE", None)  # the kernels under that cache
    out = subprocess.run([sys.executable, "-c", _STATUS], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("fused C kernel (")
    assert not marker.exists()

"""strabench.env: the allocator setting every CPU benchmark and training run applies (and records)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SNIPPET = """
import ctypes, json
from strabench.env import configure_allocator
first = configure_allocator()
# glibc's mallinfo2 counts mmapped bytes: a 64 MiB buffer must now come from the heap.
buf = ctypes.create_string_buffer(64 << 20)
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
mmapped = None
if hasattr(libc, "mallinfo2"):
    libc.mallinfo2.restype = MallInfo2
    mmapped = libc.mallinfo2().hblkhd
print(json.dumps({"first": first, "again": configure_allocator(), "mmapped": mmapped}))
"""


def _run(**env: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, timeout=120)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_allocator_keeps_large_buffers_on_the_heap_and_is_recorded():
    got = _run(STRABENCH_MALLOC="")
    assert got["first"] == got["again"] == "glibc, heap kept (mmap off, no trim)"
    if got["mmapped"] is not None:
        assert got["mmapped"] < (64 << 20)  # glibc's default would have mmapped the 64 MiB buffer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_allocator_can_be_left_alone():
    got = _run(STRABENCH_MALLOC="system")
    assert got["first"] == "system default (STRABENCH_MALLOC=system)"
    if got["mmapped"] is not None:
        assert got["mmapped"] >= (64 << 20)


def test_environment_record_names_the_allocator_in_force():
    from strabench.env import configure_allocator, describe_environment

    in_force = configure_allocator()
    assert describe_environment()["allocator"] == in_force


def test_git_state_names_the_commit_and_sees_local_changes(tmp_path):
    import subprocess

    from strabench.env import git_commit, git_state

    assert git_state(tmp_path) == (None, None) and git_commit(tmp_path) is None  # not a checkout
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False and git_commit(tmp_path) == commit
    (tmp_path / "f.txt").write_text("b")
    assert git_state(tmp_path) == (commit, True) and git_commit(tmp_path) == commit + "-dirty"

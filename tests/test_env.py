"""strabench.env: process settings only ``configure_process`` changes (and every record names)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# glibc's mallinfo2 counts mmapped bytes (hblkhd): after the allocator is configured, a large
# buffer must come from the heap. Shared by the subprocess snippets below.
MMAPPED_PROBE = """\
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
mmapped = None
if hasattr(libc, "mallinfo2"):
    libc.mallinfo2.restype = MallInfo2
    mmapped = libc.mallinfo2().hblkhd
"""

SNIPPET = """
import ctypes, json
from strabench.env import configure_process
first = configure_process(calm_threads=False)["allocator"]
# glibc's mallinfo2 counts mmapped bytes: a 64 MiB buffer must now come from the heap.
buf = ctypes.create_string_buffer(64 << 20)
{MMAPPED_PROBE}print(json.dumps({"first": first, "again": configure_process(calm_threads=False)["allocator"], "mmapped": mmapped}))
""".replace("{MMAPPED_PROBE}", MMAPPED_PROBE)


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


def test_environment_record_names_the_allocator_and_wait_policy_in_force(monkeypatch):
    from strabench.env import configure_process, describe_environment

    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    in_force = configure_process(calm_threads=False)
    env = describe_environment()
    assert env["allocator"] == in_force["allocator"] and env["omp_wait_policy"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert describe_environment()["omp_wait_policy"].startswith("unset")


LIBRARY_SNIPPET = """
import ctypes, json, os, sys
os.getloadavg = lambda: (99.0, 99.0, 99.0)  # a busy machine: calm_threads would act
sys.path.insert(0, TESTS)
from train.conftest import make_tiny_config
from strabench.env import process_settings
from strabench.measure.latency import BenchSpec, run_benchmark
from strabench.train.engine import Trainer
before = process_settings()
from strabench.train.config import resolve
Trainer(resolve(make_tiny_config("fer")), cache_dir=CACHE)
rows = run_benchmark(BenchSpec(batch=2, input_size=(16, 16), min_run_time=0.01, rounds=1), ["fer_resnet"])
buf = ctypes.create_string_buffer(64 << 20)
{MMAPPED_PROBE}print(json.dumps({"before": before, "after": process_settings(), "row": {k: rows[0][k] for k in ("allocator", "omp_wait_policy")},
                  "policy": os.environ.get("OMP_WAIT_POLICY"), "mmapped": mmapped}))
""".replace("{MMAPPED_PROBE}", MMAPPED_PROBE)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's mallopt")
def test_library_calls_leave_allocator_and_thread_policy_alone(tmp_path):
    """Building a Trainer and running a benchmark change no process-wide setting; only
    ``configure_process`` (called by the CLI entry points) does."""
    import json
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "STRABENCH_MALLOC")}
    snippet = f"TESTS, CACHE = {tests!r}, {str(tmp_path / 'cache')!r}\n" + LIBRARY_SNIPPET
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["policy"] is None
    assert got["before"] == got["after"] == got["row"] == {"allocator": "system default", "omp_wait_policy": "unset (OpenMP runtime default)"}
    if got["mmapped"] is not None:
        assert got["mmapped"] >= (64 << 20)  # glibc's default is still in force: the buffer was mmapped


def test_configure_process_calms_threads_only_on_a_busy_machine(monkeypatch):
    from strabench.env import configure_process

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    for load, expected in ((0.2, None), (1.5, "PASSIVE")):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, load, load))
        settings = configure_process(allocator=False)
        assert os.environ.get("OMP_WAIT_POLICY") == expected
        assert settings["omp_wait_policy"] == (expected or "unset (OpenMP runtime default)")


def test_configure_process_leaves_the_users_wait_policy(monkeypatch):
    from strabench.env import configure_process

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    assert configure_process(allocator=False)["omp_wait_policy"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


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

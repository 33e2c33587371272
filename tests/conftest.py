"""Shared test settings: deterministic, single-threaded torch (pytest-xdist runs 2 workers)."""

from __future__ import annotations

import itertools
import os
import tempfile

import pytest

from strabench.cache import kernel_cache_dir

# StRA's kernels: the build `make venv` made (the user's kernel cache, as the environment names it
# before the line below moves the datasets), so that a fresh clone compiles them once, not twice;
# the tests of building and loading give themselves an empty cache of their own
os.environ.setdefault("STRABENCH_KERNEL_CACHE", str(kernel_cache_dir()))
os.environ.setdefault("STRABENCH_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-datasets"))
# submitit's job folders (user-private, outside results folders): not in the home directory
os.environ.setdefault("STRABENCH_JOBS_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-jobs"))
# torch.compile in the tests: compile in this process (a pool of compile workers costs more to
# start than the few small graphs the tests compile), into a cache of this worker's own (a cache
# shared with other processes on the machine can be half-written when a test reads it)
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
# processes the tests start (strabench's CLI, training, workers) run on one thread, as the tests
# themselves do: two xdist workers already fill the 2 cores, and a second OpenMP thread per
# process would only spin (a test that needs more threads asks for them: --threads, --jobs)
os.environ.setdefault("OMP_NUM_THREADS", "1")
_INDUCTOR_CACHE = None if "TORCHINDUCTOR_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="strabench-test-inductor-")
if _INDUCTOR_CACHE is not None:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE


def _build_click_command_once() -> None:
    """Typer's test runner builds the whole click command tree on every ``invoke`` (every
    command's signature and type hints, ~40 ms); the tests invoke it about a thousand times.
    The tree is built once per app and rebuilt when a command is added or a Typer switch in the
    environment changes (the completion options read one while they are built); a click command
    keeps no state between invocations (each gets its own context)."""
    import typer.testing

    build = typer.testing._get_command
    built: dict[object, tuple[tuple[object, ...], object]] = {}  # app -> (what it was built from, command)

    def get_command(app):  # type: ignore[no-untyped-def]
        switches = tuple(sorted((k, v) for k, v in os.environ.items() if "TYPER" in k))
        shape = (len(app.registered_commands), len(app.registered_groups), switches)
        if app not in built or built[app][0] != shape:
            built[app] = (shape, build(app))
        return built[app][1]

    typer.testing._get_command = get_command


_build_click_command_once()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _INDUCTOR_CACHE is not None:
        import shutil

        shutil.rmtree(_INDUCTOR_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


def _heavy_estimate(item: pytest.Item) -> float:
    """0 for a light test; for a heavy one (``slow``, or a timeout of two minutes or more) its
    timeout in seconds, the one estimate of its cost the test states (60 when it states none)."""
    timeout = item.get_closest_marker("timeout")
    seconds = float(timeout.args[0]) if timeout and timeout.args else 0.0
    if item.get_closest_marker("slow") is None and seconds < 120:
        return 0.0
    return seconds or 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy tests first, and spread over the xdist workers, so that the last minutes of a run
    are short tests that balance, not long ones queued on one worker.

    xdist's ``worksteal`` first hands each worker a contiguous share of this order (the first
    ``len // workers`` to the first, ...), then moves queued tests from the tail of a busy
    worker's share to an idle one. So each share starts with its part of the heavy tests, dealt
    longest first to the share with the least so far, and is filled up with light ones."""
    estimates = {item.nodeid: _heavy_estimate(item) for item in items}
    heavy = sorted((i for i in items if estimates[i.nodeid]), key=lambda i: -estimates[i.nodeid])
    light = [i for i in items if not estimates[i.nodeid]]
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for item in heavy:
        share = loads.index(min(loads))
        shares[share].append(item)
        loads[share] += estimates[item.nodeid]
    order: list[pytest.Item] = []
    rest, pending_light = len(items), iter(light)
    for index, share in enumerate(shares):
        size = rest // (workers - index)  # what worksteal sends this worker first
        rest -= size
        order += share + list(itertools.islice(pending_light, max(0, size - len(share))))
    order += list(pending_light)
    assert len(order) == len(items) and {i.nodeid for i in order} == {i.nodeid for i in items}
    items[:] = order


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.requires_kernels``: a test of StRA's C kernels. Skipped only where the kernels
    are switched off on purpose (STRABENCH_FUSED_KERNEL=0, the pure-torch run) or no C compiler
    exists; where a compiler exists and they still fail to build or load, the test fails."""
    if item.get_closest_marker("requires_kernels") is None:
        return
    from strabench.layers import _kernel_cache, _local_kernel

    if _local_kernel.available():
        return
    if os.environ.get("STRABENCH_FUSED_KERNEL", "1").strip().lower() in ("0", "off", "false", "no"):
        pytest.skip(f"kernels switched off: {_local_kernel.status()}")
    if _kernel_cache.compiler() is None:
        pytest.skip(f"no C compiler here: {_local_kernel.status()}")
    pytest.fail(f"a C compiler is here but the kernels did not build or load: {_local_kernel.status()}")

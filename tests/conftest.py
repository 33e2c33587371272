"""Shared test settings: deterministic, single-threaded torch (pytest-xdist runs 2 workers)."""

from __future__ import annotations

import os
import tempfile

import pytest

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
    built: dict[int, tuple[object, tuple[object, ...], object]] = {}

    def get_command(app):  # type: ignore[no-untyped-def]
        switches = tuple(sorted((k, v) for k, v in os.environ.items() if "TYPER" in k))
        shape = (len(app.registered_commands), len(app.registered_groups), switches)
        hit = built.get(id(app))
        if hit is None or hit[0] is not app or hit[1] != shape:
            hit = built[id(app)] = (app, shape, build(app))
        return hit[2]

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


def _heavy(item: pytest.Item) -> bool:
    timeout = item.get_closest_marker("timeout")
    return item.get_closest_marker("slow") is not None or bool(timeout and timeout.args and timeout.args[0] >= 120)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy tests (``slow``, or a timeout of two minutes or more) run first, so that the last
    minutes of a two-worker run are short tests that balance, not one long test on one worker."""
    items.sort(key=lambda item: not _heavy(item))


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

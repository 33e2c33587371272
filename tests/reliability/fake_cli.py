"""`strabench` with the fake training engine of tests/suite/fakes.py, for tests that need real
processes and real signals but not real training (each fake epoch sleeps EPOCH_S seconds).

    python fake_cli.py EPOCH_S ARGS...     # as `strabench ARGS...`

`run` (one process) and `run --jobs N` (the engine pickled into each worker) both use the fake;
measuring is faked too. Needs tests/ on PYTHONPATH (``fake_env``), where the workers find it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]


def fake_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with tests/ on PYTHONPATH (the workers unpickle the fake engine by reference)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))}


def fake_cli_argv(epoch_s: float, *args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), str(epoch_s), *(str(a) for a in args)]


def main() -> None:
    from suite.fakes import FakeEngine, fake_measure

    from strabench.cli import main as strabench_main
    from strabench.suite import executors, runner

    engine = FakeEngine()
    engine.epoch_s = float(sys.argv[1])
    engine.log_calls = True
    runner._fit = engine
    runner.measure_model = fake_measure
    executors.run_parallel = functools.partial(executors.run_parallel, fit=engine, poll_s=0.1)
    strabench_main(sys.argv[2:])


if __name__ == "__main__":
    main()

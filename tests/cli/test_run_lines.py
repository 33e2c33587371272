"""`strabench run`'s line view (logs, pipes, --jobs): each run's lines name its own index and time."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from strabench.cli import run as run_cli


def test_overlapping_runs_each_report_their_own_index_and_duration(monkeypatch) -> None:
    """--jobs 2 starts run 2 before run 1 ends: run 1's end line must still say [1/2] and its own time."""
    now = [0.0]
    monkeypatch.setattr(run_cli.time, "monotonic", lambda: now[0])
    buffer = io.StringIO()
    view = run_cli.LineView(Console(file=buffer, width=200, color_system=None))
    first, second = SimpleNamespace(run_id="a-s0-1"), SimpleNamespace(run_id="b-s0-2")
    for t, call in ((100.0, lambda: view.on_run_start(1, 2, first, "pending")),
                    (160.0, lambda: view.on_run_start(2, 2, second, "pending")),
                    (700.0, lambda: view.on_run_end(first, "finished", {})),  # 600 s after its own start
                    (1300.0, lambda: view.on_run_end(second, "finished", {}))):  # 1140 s
        now[0] = t
        call()
    lines = buffer.getvalue().splitlines()
    assert lines[2] == "[1/2] a-s0-1 finished in 600 s", lines
    assert lines[3] == "[2/2] b-s0-2 finished in 1140 s", lines

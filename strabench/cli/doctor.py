"""Report versions, devices, threads, cache and results paths, optional dependencies and machine load.

Optional dependencies are listed with their version or "not installed" and what they enable;
a missing one is not a failure. Load: the 1/5/15-minute load averages and the cores busy over
half a second now (timings taken while half the cores or more are busy are flagged NOISY).
Exit 1 when a check fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: (distribution, what it enables). Core dependencies are checked by ``strabench.env.doctor_checks``.
OPTIONAL = (
    ("onnx", "strabench export, bench --runtime onnxruntime (pip install 'strabench[onnx]')"),
    ("onnxruntime", "bench --runtime onnxruntime (pip install 'strabench[onnx]')"),
    ("scipy", "statistics of the report"),
    ("statsmodels", "statistics of the report"),
    ("submitit", "run --executor slurm | submitit-local"),
    ("timm", "timm:NAME models (pip install 'strabench[timm]')"),
    ("tensorboard", "TensorBoard event files of every run"),
    ("mlflow", "run/train --mlflow (pip install 'strabench[mlflow]')"),
    ("wandb", "run/train --wandb (pip install wandb)"),
    ("psutil", "busy-core measurement beside every timing"),
    ("filelock", "locks of results and caches"),
)


def doctor_command(
    results: Annotated[Path, typer.Option("--results", help="Results directory to check.")] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    from strabench.cli._common import console, print_json
    from strabench.env import doctor_checks

    rows = doctor_checks(results) + optional_rows() + [load_row()]
    failed = [r for r in rows if r[1] == "fail"]
    if as_json:
        print_json([{"check": c, "status": s, "detail": d} for c, s, d in rows])
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="strabench doctor")
        for column in ("check", "status", "detail"):
            table.add_column(column, overflow="fold")
        colour = {"ok": "green", "warn": "yellow", "fail": "red", "absent": "dim"}
        for check, status, detail in rows:
            table.add_row(Text(check), Text(status, style=colour[status]), Text(detail))
        console().print(table)
    if failed:
        raise typer.Exit(1)


def optional_rows() -> list[tuple[str, str, str]]:
    """(package, ok | absent, version or "not installed" + what it enables)."""
    from importlib import metadata

    rows = []
    for package, enables in OPTIONAL:
        try:
            rows.append((package, "ok", f"{metadata.version(package)}; {enables}"))
        except metadata.PackageNotFoundError:
            rows.append((package, "absent", f"not installed; {enables}"))
    return rows


def load_row(window_s: float = 0.5) -> tuple[str, str, str]:
    """Load averages and the cores busy right now; warn at half the cores or more (as timings do)."""
    import os

    cores = os.cpu_count() or 1
    try:
        one, five, fifteen = os.getloadavg()
        averages = f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {cores} cores"
    except OSError:
        one, averages = None, f"no load average on this system ({cores} cores)"
    try:
        import psutil

        busy: float | None = psutil.cpu_percent(interval=window_s) / 100.0 * cores
    except ImportError:
        busy = None
    now = f"; {busy:.1f} cores busy now" if busy is not None else ""
    level = busy if busy is not None else one
    status = "warn" if level is not None and level >= cores / 2 else "ok"
    hint = " (timings now would be NOISY)" if status == "warn" else ""
    return ("machine load", status, averages + now + hint)


def register(app: typer.Typer) -> None:
    app.command("doctor", help=__doc__)(doctor_command)

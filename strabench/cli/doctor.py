"""Report versions, devices, threads, cache and results paths, and check the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def doctor_command(
    results: Annotated[Path, typer.Option("--results", help="Results directory to check.")] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    from strabench.cli._common import console, print_json
    from strabench.env import doctor_checks

    rows = doctor_checks(results)
    failed = [r for r in rows if r[1] == "fail"]
    if as_json:
        print_json([{"check": c, "status": s, "detail": d} for c, s, d in rows])
    else:
        from rich.table import Table

        table = Table(title="strabench doctor")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check, status, detail in rows:
            table.add_row(check, f"[{colour[status]}]{status}[/]", detail)
        console().print(table)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor", help=__doc__)(doctor_command)

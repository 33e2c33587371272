"""Tables (and plots) of suite results, with the paper's numbers beside ours.

One markdown table per suite: our metrics as mean ± std over seeds, params, GMACs under each
counting convention (named in the header) and latency; with --paper (default) the paper's
value and our delta in adjacent columns, the paper table cited under it. Failed runs show as
"failed". Writes <suite>/report.md (and plots/) and prints; --out FILE writes there instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    results: Annotated[list[Path] | None, typer.Argument(help="Suite result directories, or folders of them (default: results/).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report to this file instead of <suite>/report.md.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md (tables + plots), csv or json (one record per variant).")] = "md",
    paper: Annotated[bool, typer.Option("--paper/--no-paper", help="Show the paper's numbers and our delta beside ours.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw PNG plots and link them (md only).")] = True,
) -> None:
    import sys

    from strabench.cli._common import console
    from strabench.report import build_report

    report = build_report(results or [Path("results")], fmt=fmt, paper=paper, out=out, plots=plots)
    if out is not None:
        console(stderr=True).print(f"wrote {out}")
        return
    sys.stdout.write(report.text)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("report", help=__doc__)(report_command)

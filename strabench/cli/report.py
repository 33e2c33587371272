"""Tables (and plots) of suite results, with the paper's numbers beside ours.

One markdown table per suite: our metrics as mean ± std over seeds, params, GMACs under each
counting convention (named in the header) and latency; with --paper (default) the paper's
value and our delta in adjacent columns, the paper table cited under it. Failed runs show as
"failed". Writes <suite>/report.md (and plots/). On a terminal the tables are drawn as tables
and the markdown's path is printed; piped, the markdown itself is printed. --json prints one
record per variant, --format csv the same as CSV; --out FILE writes there instead.
A suite with a [leaderboard] table (or any suite, with --rank-by / --versus) opens with a
ranked table: each variant's score with its interval, its paired verdict against each
reference, params, GMACs per convention and latency ratios, and Pareto plots
(docs/attention-zoo.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from strabench.report import Report


def report_command(
    results: Annotated[list[Path] | None, typer.Argument(help="Suite result directories, or folders of them (default: results/).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report to this file instead of <suite>/report.md.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md (tables + plots) or csv (one record per variant).")] = "md",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per variant (instead of --format).")] = False,
    paper: Annotated[bool, typer.Option("--paper/--no-paper", help="Show the paper's numbers and our delta beside ours.")] = True,
    plots: Annotated[bool | None, typer.Option("--plots/--no-plots", help="Draw PNG plots and link them (md only; default: on).")] = None,
    rank_by: Annotated[str | None, typer.Option("--rank-by", help="Open with a leaderboard ranked by this metric (mAP ...) or cost (params, macs_fvcore, latency); default: the suite's [leaderboard].")] = None,
    versus: Annotated[list[str] | None, typer.Option("--versus", help="Leaderboard: a variant every row is compared with (repeatable; default: the suite's [leaderboard] or baseline).")] = None,
) -> None:
    import sys

    from strabench.cli._common import console
    from strabench.errors import ConfigError
    from strabench.report import build_report

    if fmt == "json":
        raise ConfigError("--format json is now --json")
    if fmt not in ("md", "csv"):
        raise ConfigError(f"--format must be one of md, csv, got {fmt!r}")
    if as_json and fmt != "md":
        raise ConfigError(f"--json and --format {fmt} ask for two outputs; give one")
    chosen = "json" if as_json else fmt
    if plots is not None and chosen != "md":
        raise ConfigError(f"--{'' if plots else 'no-'}plots applies to the markdown report only, not to {chosen} output")
    if (rank_by or versus) and chosen != "md":
        raise ConfigError(f"--rank-by and --versus shape the markdown report's leaderboard, not {chosen} output")
    paths = results or [Path("results")]
    report = build_report(paths, fmt=chosen, paper=paper, out=out, plots=True if plots is None else plots, rank_by=rank_by,
                          versus=versus)
    if out is not None:
        console(stderr=True).print(f"wrote {out}")
        return
    terminal = console()
    if chosen == "md" and terminal.is_terminal:
        _print_tables(terminal, paths, report, paper=paper, rank_by=rank_by, versus=versus)
        return
    sys.stdout.write(report.text)
    sys.stdout.flush()


def _print_tables(out: "Console", paths: list[Path], report: "Report", *, paper: bool, rank_by: str | None = None,
                  versus: list[str] | None = None) -> None:
    """Each suite's table as rich tables (a 300-character markdown line is unreadable in a
    terminal): the columns are split into as many tables as the terminal's width needs, each
    starting with the variant, so no cell is folded. A suite's leaderboard, if it has one, first."""
    from strabench.report import leaderboard
    from strabench.report.tables import find_suite_dirs, load_suite_results, merge_results, table_frame

    for suite in merge_results(load_suite_results(d) for d in find_suite_dirs(paths)):
        if leaderboard.wanted(suite, rank_by, versus):
            board = leaderboard.build_leaderboard(suite, rank_by=rank_by, versus=versus)
            _print_frame(out, leaderboard.leaderboard_frame(board), f"{suite.name}: leaderboard by {board.rank_by}")
        frame = table_frame(suite, paper=paper)
        title = suite.name + (f" — {suite.meta['paper_table']}" if suite.meta.get("paper_table") else "")
        if frame.empty:
            out.print(f"{title}: no runs")
            continue
        _print_frame(out, frame, title)
    markdown = [str(p) for p in report.written if p.suffix == ".md"]
    if markdown:
        out.print(f"markdown with notes and plots: {', '.join(markdown)}")


def _print_frame(out: "Console", frame: Any, title: str) -> None:
    from rich.table import Table

    headers = [str(c) for c in frame.columns]
    rows = [[str(cell).replace("`", "") for cell in row] for row in frame.itertuples(index=False)]
    for part, columns in enumerate(_column_chunks(headers, rows, out.width)):
        table = Table(title=title if part == 0 else None, title_justify="left")
        for index in columns:
            table.add_column(headers[index], justify="left" if index == 0 else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[index] for index in columns))
        out.print(table)


def _column_chunks(headers: list[str], rows: list[list[str]], width: int) -> list[list[int]]:
    """Column indices per table: the first (the variant) in each, then as many as fit ``width``."""
    needed = [max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers)]
    chunks: list[list[int]] = []
    current = [0]
    used = needed[0] + 1
    for index in range(1, len(headers)):
        if used + needed[index] > width and len(current) > 1:
            chunks.append(current)
            current, used = [0], needed[0] + 1
        current.append(index)
        used += needed[index]
    chunks.append(current)
    return chunks


def register(app: typer.Typer) -> None:
    app.command("report", help=__doc__)(report_command)

"""Tables (and plots) of suite results, with the paper's numbers beside ours.

One markdown table per suite: our metrics as mean ± std over seeds, params, GMACs under each
counting convention (named in the header) and latency; with --paper (default) the paper's
value and our delta in adjacent columns, the paper table cited under it. Failed runs show as
"failed". Writes <suite>/report.md (and plots/). On a terminal a compact view is printed per
suite (variant, primary metric with its 95 % interval, untrained score, params, GMACs, latency
ratio, and a verdict line per compared variant), then the markdown's path; --wide prints every
column instead (split into several tables rather than cutting a cell). Piped, the markdown
itself is printed. --json prints one record per variant, --format csv the same as CSV; --out
FILE writes there instead.
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
    wide: Annotated[bool, typer.Option("--wide", help="On a terminal: every column of the markdown table, not the compact view.")] = False,
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
    if out is not None:
        from strabench.io import check_regular_target

        check_regular_target(out)  # a device or a link is refused before any work
    report = build_report(paths, fmt=chosen, paper=paper, out=out, plots=True if plots is None else plots,
                          rank_by=rank_by, versus=versus)
    if report.warnings:  # results from mixed code (strabench.report.mixed_code)
        from rich.markup import escape

        for line in report.warnings:
            console(stderr=True).print(f"[yellow]warning:[/] {escape(line)}", markup=True, highlight=False)
    if out is not None:
        console(stderr=True).print(f"wrote {out}")
        return
    terminal = console()
    if chosen == "md" and terminal.is_terminal:
        _print_views(terminal, paths, report, paper=paper, wide=wide, rank_by=rank_by, versus=versus)
        return
    sys.stdout.write(report.text)
    sys.stdout.flush()


def _print_views(out: "Console", paths: list[Path], report: "Report", *, paper: bool, wide: bool,
                 rank_by: str | None = None, versus: list[str] | None = None) -> None:
    """Each suite's leaderboard (where it has one), then its compact (or --wide) view, then where
    the markdown with every note is."""
    from strabench.report import leaderboard
    from strabench.report.tables import find_suite_dirs, load_suite_results, merge_results
    from strabench.report.terminal import compact_view, print_suite, print_table, wide_view

    for suite in merge_results(load_suite_results(d) for d in find_suite_dirs(paths)):
        if leaderboard.wanted(suite, rank_by, versus):
            board = leaderboard.build_leaderboard(suite, rank_by=rank_by, versus=versus)
            frame = leaderboard.leaderboard_frame(board)
            rows = [[str(cell).replace("`", "") for cell in row] for row in frame.itertuples(index=False)]
            print_table(out, [str(c) for c in frame.columns], rows, title=f"{suite.name}: leaderboard by {board.rank_by}")
        print_suite(out, (wide_view if wide else compact_view)(suite, paper=paper))
    markdown = [str(p) for p in report.written if p.suffix == ".md"]
    if markdown:
        more = "" if wide else "; every column: --wide"
        out.print(f"markdown with notes and plots: {', '.join(markdown)}{more}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report", help=__doc__)(report_command)

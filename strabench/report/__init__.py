"""Reports over suite results: markdown tables beside the paper's numbers, CSV/JSON, PNG plots.

``build_report`` is what ``strabench report`` calls: it finds the suite directories, merges
same-named suites (copied shards), draws the plots, renders and writes the output. Terminal
views take each comparison's verdict as one line from ``tables.verdict_lines(results)``
(``verdicts.verdict_line(record, metric)`` for one record of ``tables.summarise``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strabench.errors import ConfigError

FORMATS = ("md", "csv", "json")
REPORT_MD = "report.md"


@dataclass
class Report:
    """The rendered text and every file written (report.md per suite or --out, plots)."""

    text: str
    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. groups whose runs different code made


def build_report(
    paths: Sequence[Path | str],
    *,
    fmt: str = "md",
    paper: bool = True,
    out: Path | str | None = None,
    plots: bool = True,
    rank_by: str | None = None,
    versus: Sequence[str] | None = None,
) -> Report:
    """Render every suite under ``paths``; md also writes ``<suite>/report.md`` unless ``out`` is given.

    A suite with a ``[leaderboard]`` table, or every suite when ``rank_by``/``versus`` is given,
    opens with its ranked board (``strabench.report.leaderboard``)."""
    from strabench.io import atomic_write_text
    from strabench.report import leaderboard
    from strabench.report.leaderboard_plots import plot_leaderboard
    from strabench.report.plots import plot_suite
    from strabench.report.tables import (
        find_suite_dirs,
        load_suite_results,
        merge_results,
        records_to_csv,
        render_markdown,
        summary_records,
    )

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from strabench.report.mixed_code import mixed_code_lines

    suites = merge_results(load_suite_results(d) for d in find_suite_dirs(paths))
    written: list[Path] = []
    mixed = {suite.name: mixed_code_lines(suite.rows) for suite in suites}
    if fmt == "csv":
        text = records_to_csv(summary_records(suites, paper=paper))
    elif fmt == "json":
        text = json.dumps(summary_records(suites, paper=paper), indent=2, default=str) + "\n"
    else:
        sections = []
        for suite in suites:
            figures = plot_suite(suite) if plots else {}
            written.extend(figures.values())
            where = Path(out).parent if out is not None else suite.directory
            section = render_markdown(suite, paper=paper, plots=figures, relative_to=where)
            if mixed[suite.name]:
                section += "\n**Results from mixed code.**\n\n" + "".join(f"- {line}\n" for line in mixed[suite.name])
            if leaderboard.wanted(suite, rank_by, versus):
                board = leaderboard.build_leaderboard(suite, rank_by=rank_by, versus=versus)
                pareto = plot_leaderboard(board, suite.directory) if plots else {}
                written.extend(pareto.values())
                section = leaderboard.render_leaderboard(board, plots=pareto, relative_to=where) + "\n" + section
            if out is None:
                atomic_write_text(suite.directory / REPORT_MD, f"# strabench report: {suite.name}\n\n{section}")
                written.append(suite.directory / REPORT_MD)
            sections.append(section)
        text = "# strabench report\n\n" + "\n".join(sections)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
        written.append(Path(out))
    warnings = [f"{name}: {line}" for name, lines in mixed.items() for line in lines]
    return Report(text, written, warnings)

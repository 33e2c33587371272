"""Show where each run of a suite stands, from its results directory alone (any host).

pending, queued (with its job id), running (on which host: judged by the run's lock and its
heartbeat, not by what a killed process last wrote), interrupted (resumes from its checkpoint),
finished, or failed (with its one-line reason). Works for runs of every executor. Exit 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

COLOURS = {"pending": "white", "queued": "cyan", "running": "blue", "interrupted": "yellow", "finished": "green", "failed": "red"}


def status_table(rows: list[dict[str, Any]], title: str) -> Any:
    """A rich table of run states (shared by ``status`` and ``run --wait``/``--jobs``)."""
    from rich.markup import escape
    from rich.table import Table

    from strabench.io import as_text

    def cell(value: Any) -> str:  # read from files others may write: plain one-line text, never markup
        return escape(as_text(value if isinstance(value, str) else "" if value is None else str(value)) or "")

    table = Table(title=escape(title))
    for column in ("run", "state", "job", "host", "attempts", "detail"):
        prose = column in ("host", "detail")  # may wrap; run ids, states and numbers never do
        table.add_column(column, no_wrap=not prose, overflow="fold", ratio=1 if prose else None)
    for row in rows:
        state = row["state"]
        table.add_row(cell(row["run_id"]), f"[{COLOURS.get(state, 'white')}]{state}[/]", cell(row.get("job_id") or ""),
                      cell(row.get("host") or "") if state != "pending" else "", cell(row.get("attempts") or ""),
                      cell(row.get("reason") or ""))
    return table


def counts_line(rows: list[dict[str, Any]]) -> str:
    from strabench.suite.status import STATES

    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs"


class StatusView:
    """Follows run states: a live table on a terminal, one line per change in logs."""

    def __init__(self, out: "Console", title: str) -> None:
        self.out = out
        self.title = title
        self.live: Any = None
        self.seen: dict[str, tuple[str, Any]] = {}
        if out.is_terminal:
            from rich.live import Live

            self.live = Live(console=out, refresh_per_second=2)
            self.live.start()

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        if self.live is not None:
            from rich.console import Group

            self.live.update(Group(status_table(rows, self.title), counts_line(rows)))
            return
        for row in rows:
            key = (row["state"], row.get("job_id"))
            if self.seen.get(row["run_id"]) != key:
                self.seen[row["run_id"]] = key
                where = f" job {row['job_id']}" if row.get("job_id") else ""
                host = f" on {row['host']}" if row["state"] == "running" and row.get("host") else ""
                detail = f": {row['reason']}" if row["state"] in ("failed", "interrupted") and row.get("reason") else ""
                self.out.print(f"{row['run_id']}: {row['state']}{where}{host}{detail}", markup=False, highlight=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def status_command(
    results: Annotated[Path, typer.Argument(help="A suite's results directory (<out>/<suite name>).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs' states as JSON.")] = False,
) -> None:
    from strabench.cli._common import console, print_json
    from strabench.errors import ConfigError
    from strabench.suite.status import suite_states

    if not results.is_dir():
        raise ConfigError(f"{results} is not a directory (give a suite's results directory, e.g. results/quick)")
    rows = suite_states(results)
    if as_json:
        print_json(rows)
        return
    out = console()
    out.print(status_table(rows, f"{results}: {len(rows)} run(s)"))
    out.print(counts_line(rows))


def register(app: typer.Typer) -> None:
    app.command("status", help=__doc__)(status_command)

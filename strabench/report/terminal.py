"""Suite results and command tables for a terminal: views that fit, and never cut a number.

A markdown report line can be 300 characters; a terminal is 80-120. Two views of a suite:

* **compact** (``strabench report``, ``make demo``): variant, the primary metric with its 95 %
  interval, the untrained network's score, params, GMACs, the latency ratio to the baseline,
  then one verdict line per compared variant and one-line legends;
* **wide** (``report --wide``): every column of the markdown table.

Both are drawn with ``print_table``: no cell is ever wrapped or shortened (no "1.00…"); columns
that do not fit the width move to a further table that repeats the first (key) column. A column
that is "—" in every row is left out and named in one note line.

The data is ``strabench.report.tables.summarise`` (one record per group of seeds); the only
place the comparison's verdict is turned into text is ``strabench.report.verdicts.verdict_line``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strabench.report.cells import labelled

if TYPE_CHECKING:
    from rich.console import Console

    from strabench.report.suite_results import SuiteResults

EMPTY = "—"
#: One line wherever NOISY appears (bench, report): what it means and what to do about it.
NOISY_LEGEND = "NOISY: IQR > 10 % of the median, < 5 samples or a busy machine: small differences may be noise"
# Between a cell's content and the next: rich's padding (1 + 1) and the vertical rule.
_CELL_EXTRA = 3


# --- generic tables -------------------------------------------------------------------------------


def column_chunks(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, keys: int = 1) -> list[list[int]]:
    """Column indices per table: the ``keys`` first columns in each, then as many as fit ``width``
    (at least one more per table, so a column wider than the terminal still shows, unwrapped)."""
    needed = [max([len(str(header)), *(len(r[i]) for r in rows)]) + _CELL_EXTRA for i, header in enumerate(headers)]
    base = list(range(min(keys, len(headers))))
    base_width = sum(needed[i] for i in base) + 1
    chunks: list[list[int]] = []
    current, used = list(base), base_width
    for index in range(len(base), len(headers)):
        if used + needed[index] > width and len(current) > len(base):
            chunks.append(current)
            current, used = list(base), base_width
        current.append(index)
        used += needed[index]
    chunks.append(current)
    return chunks


def drop_empty_columns(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, keep: int = 1, empty: str = EMPTY
) -> tuple[list[str], list[list[str]], list[str]]:
    """Leave out columns (after the first ``keep``) that are ``empty`` in every row; returns the
    kept headers, the kept rows and the names of the columns left out."""
    drop = {i for i in range(keep, len(headers)) if rows and all(str(r[i]).strip() in (empty, "") for r in rows)}
    kept = [i for i in range(len(headers)) if i not in drop]
    return ([headers[i] for i in kept], [[r[i] for i in kept] for r in rows], [headers[i] for i in sorted(drop)])


def print_table(
    out: "Console",
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Callable[[int], bool] = lambda index: index > 0,
    keys: int = 1,
    styles: dict[int, str] | None = None,
) -> None:
    """Rich tables that never wrap or shorten a cell (see ``column_chunks``). Cells are strings
    (styled per column by ``styles``) or ``rich.text.Text`` (their own style, never markup).

    On a terminal the width is the terminal's; elsewhere (a pipe, a log) the table is printed
    at its natural width, in one piece.
    """
    from rich.table import Table
    from rich.text import Text

    cells = [[c if isinstance(c, Text) else Text(str(c), style=(styles or {}).get(i, "")) for i, c in enumerate(row)] for row in rows]
    plain = [[c.plain for c in row] for row in cells]
    width = out.width if out.is_terminal else 10**6
    chunks = column_chunks(headers, plain, width, keys=keys)
    for part, columns in enumerate(chunks):
        table = Table(title=Text(title) if title and part == 0 else None, title_justify="left", title_style="bold")
        for index in columns:
            table.add_column(headers[index], justify="right" if right(index) else "left", no_wrap=True, overflow="fold")
        for row in cells:
            table.add_row(*(_justified(row[i], "right" if right(i) else "left") for i in columns))
        needed = sum(max([len(headers[i]), *(len(r[i]) for r in plain)]) + _CELL_EXTRA for i in columns) + 1
        if out.is_terminal or needed <= out.width:
            out.print(table)
        else:  # a pipe: one line per row, however long
            from rich.console import Console

            wide = Console(file=out.file, width=needed, color_system=None, highlight=False, force_terminal=False)
            wide.print(table)


def _justified(text: "Any", justify: str) -> "Any":
    copy = text.copy()
    copy.justify = justify
    return copy


def plain_rows(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Tab-separated lines, header first: what a table becomes when piped (``cut -f1``, ``grep``)."""
    lines = ["\t".join(str(h) for h in headers)]
    lines += ["\t".join(_plain_cell(c) for c in row) for row in rows]
    return "\n".join(lines) + "\n"


def _plain_cell(value: Any) -> str:
    return " ".join(str(value).split())  # no tab or newline inside a field


# --- suite views ----------------------------------------------------------------------------------


@dataclass
class SuiteView:
    """What a terminal shows of one suite: a title, a table, verdict lines and notes."""

    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    noisy: bool = False


def suite_title(results: "SuiteResults") -> str:
    paper_table = results.meta.get("paper_table")
    return results.name + (f" — {paper_table}" if paper_table else "")


def compact_view(results: "SuiteResults", *, paper: bool = True) -> SuiteView:
    """The few numbers a reader needs first (see the module docstring); ``--wide`` has the rest."""
    from strabench.report.tables import summarise

    summary = summarise(results, paper=paper)
    view = SuiteView(suite_title(results))
    if not summary:
        return view
    metric = results.primary_metric
    one_seed_interval = False
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [("variant", labelled)]
    if len({tuple(r["seeds"]) for r in summary}) > 1 or any(r["failed"] or r["pending"] for r in summary):
        columns.append(("seeds", _seeds_cell))
    if metric:
        def metric_cell(record: dict[str, Any]) -> str:
            nonlocal one_seed_interval
            text, from_test_set = _metric_with_interval(results, record, metric)
            one_seed_interval |= from_test_set
            return text

        columns.append((f"{metric} (%) [95% CI]", metric_cell))
        columns.append(("untrained", lambda r: _fmt(r.get(f"{metric}_untrained_mean"), 2)))
    columns.append(("params (M)", lambda r: _fmt(_scaled(r.get("params"), 1e6), 2)))
    columns.append(("GMACs", lambda r: _fmt(_scaled(r.get("macs_paper"), 1e9), 3)))
    baseline = results.baseline
    columns.append((f"latency ×{baseline}" if baseline else "latency ratio", _ratio_cell))
    headers = [h for h, _ in columns]
    rows = [[cell(r) for _, cell in columns] for r in summary]
    view.headers, view.rows, dropped = drop_empty_columns(headers, rows)
    view.noisy = any(r.get("latency_noisy") for r in summary)
    if metric:
        view.verdicts = verdict_lines(results, summary, metric)
    view.notes = _compact_notes(results, summary, metric, one_seed_interval=one_seed_interval, dropped=dropped)
    return view


def wide_view(results: "SuiteResults", *, paper: bool = True) -> SuiteView:
    """Every column of the markdown table (``strabench.report.tables.table_frame``)."""
    from strabench.report.tables import summarise, table_frame

    summary = summarise(results, paper=paper)
    view = SuiteView(suite_title(results))
    if not summary:
        return view
    frame = table_frame(results, paper=paper, summary=summary)
    headers = [str(c) for c in frame.columns]
    rows = [[str(cell).replace("`", "") for cell in row] for row in frame.itertuples(index=False)]
    view.headers, view.rows, dropped = drop_empty_columns(headers, rows)
    view.noisy = any(r.get("latency_noisy") for r in summary)
    if results.primary_metric:
        view.verdicts = verdict_lines(results, summary, results.primary_metric)
    if dropped:
        view.notes.append(_dropped_note(dropped))
    if view.noisy:
        view.notes.append(NOISY_LEGEND)
    return view


def print_suite(out: "Console", view: SuiteView) -> None:
    if not view.rows:
        out.print(f"{view.title}: no runs", highlight=False)
        return
    print_table(out, view.headers, view.rows, title=view.title)
    for line in view.verdicts:
        out.print(line, highlight=False, soft_wrap=not out.is_terminal)
    for line in view.notes:
        out.print(line, highlight=False, style="dim", soft_wrap=not out.is_terminal)


# --- cells ----------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    if value is None or value != value:
        return EMPTY
    return f"{value:.{digits}f}"


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value / scale


def _seeds_cell(record: dict[str, Any]) -> str:
    text = f"{record['finished']}/{record['runs']}"
    extra = [f"{record['failed']} failed"] if record["failed"] else []
    extra += [f"{record['pending']} pending"] if record["pending"] else []
    return f"{text} ({', '.join(extra)})" if extra else text


def _metric_with_interval(results: "SuiteResults", record: dict[str, Any], metric: str) -> tuple[str, bool]:
    """'9.94 [7.43, 12.78]': the mean with its interval over seeds, or with one seed the run's own
    test-set interval (marked †; the second value says so)."""
    mean = record.get(f"{metric}_mean")
    if mean is None:
        return ("failed" if record["failed"] else "pending") if not record["finished"] else EMPTY, False
    low, high = record.get(f"{metric}_ci_low"), record.get(f"{metric}_ci_high")
    if low is not None and high is not None:
        return f"{mean:.2f} [{low:.2f}, {high:.2f}]", False
    if record.get(f"{metric}_n") == 1:
        run = next((r for r in results.rows if r["variant"] == record["variant"] and r.get("group") == record.get("group")
                    and r["status"] == "finished"), None)
        interval = (run or {}).get("metrics_ci", {}).get(metric)
        if interval and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
            return f"{mean:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]†", True
    return f"{mean:.2f}", False


def _ratio_cell(record: dict[str, Any]) -> str:
    ratio = record.get("latency_ratio")
    if ratio is None:
        return EMPTY
    return f"{ratio:.3f}×" + (" NOISY" if record.get("latency_noisy") else "")


# --- the verdict ----------------------------------------------------------------------------------


def verdict_lines(results: "SuiteResults", summary: Sequence[dict[str, Any]], metric: str) -> list[str]:
    """One line per variant compared with the baseline (paired by seed, same setting), as
    ``strabench.report.verdicts.verdict_line`` writes it (the one place a verdict becomes text)."""
    from strabench.report.verdicts import verdict_line

    return [f"verdict: {verdict_line(record, metric)}" for record in summary if record.get(f"{metric}_verdict")]


# --- notes ----------------------------------------------------------------------------------------


def _dropped_note(dropped: Sequence[str]) -> str:
    return f"left out ({EMPTY} in every row): {', '.join(dropped)}"


def _compact_notes(
    results: "SuiteResults", summary: Sequence[dict[str, Any]], metric: str | None, *, one_seed_interval: bool,
    dropped: Sequence[str],
) -> list[str]:
    notes = []
    seeds = sorted({s for r in summary for s in r["seeds"]})
    if metric:
        over = f"mean over seeds {_seed_list(seeds)} [95 % interval over seeds]" if len(seeds) != 1 else f"seed {seeds[0]}"
        notes.append(f"{metric} in %, {over}" + ("; † one seed: its own test-set interval (bootstrap)" if one_seed_interval else ""))
    inputs = sorted({r["input"] for r in summary if r.get("input")})
    notes.append("GMACs" + (f" at {', '.join(inputs)}" if inputs else "") + ": conv + linear multiply-adds (the paper's 'FLOPs')")
    if any(r.get("latency_ratio") is not None for r in summary):
        notes.append(f"latency: time per image / {results.baseline}'s, timed interleaved in one process")
    if dropped:
        notes.append(_dropped_note(dropped))
    if any(r.get("latency_noisy") for r in summary):
        notes.append(NOISY_LEGEND)
    return notes


def _seed_list(seeds: Sequence[int]) -> str:
    """'0-6' for a run of consecutive seeds, else the list."""
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))

"""List registered models (name, task, block, params, GMACs in the paper's convention).

Numbers come from the complexity table shipped with strabench, so nothing is built. Piped (not a
terminal), the list is tab-separated with a header line and whole names, for `grep`, `cut -f1`
and scripts; --json gives every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

COMPLEXITY_CACHE = "complexity.json"  # under the strabench cache: entries of models outside the shipped table


def list_command(
    pattern: Annotated[str, typer.Argument(help="Shell wildcard over model names, e.g. '*stra*'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    from strabench.cli._common import console, print_json
    from strabench.measure.golden import complexity_table, read_cache
    from strabench.registry import list_models, model_info

    names = list_models(pattern)
    shipped = read_cache()
    cache = user_complexity_cache() if any(name not in shipped for name in names) else None
    table = complexity_table(names, cache=cache)
    rows = []
    for name in names:
        info = model_info(name)
        entry = table.get(name, {})
        rows.append(
            {
                "name": name,
                "task": ",".join(info.tasks),
                "family": info.family,
                "block": info.block,
                "input": list(info.default_input),
                "params": entry.get("params"),
                "macs_paper": entry.get("macs_paper"),
                "paper_ref": info.paper.as_dict() if info.paper else None,
                "description": info.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    headers = ("name", "task", "block", "input", "params (M)", "GMACs")
    cells = [
        [
            row["name"], row["task"], row["block"], "x".join(map(str, row["input"])),
            f"{row['params'] / 1e6:.2f}" if row["params"] is not None else "?",
            f"{row['macs_paper'] / 1e9:.3f}" if row["macs_paper"] is not None else "?",
        ]
        for row in rows
    ]
    out = console()
    if not out.is_terminal:
        import sys

        from strabench.report.terminal import plain_rows

        sys.stdout.write(plain_rows(headers, cells))
        sys.stdout.flush()
        return
    from rich.table import Table

    table_view = Table(title=f"strabench models ({len(rows)})", caption="GMACs: the paper's convention (conv+linear multiply-adds, one image)")
    for column in headers:
        text = column == "block"  # the one column that may wrap; names and numbers never do
        table_view.add_column(column, justify="left" if column in ("name", "task", "block") else "right",
                              no_wrap=not text, overflow="fold", ratio=1 if text else None)
    for cell_row in cells:
        table_view.add_row(*cell_row)
    out.print(table_view)


def user_complexity_cache() -> Path:
    """Where entries of models outside the shipped table are kept (``strabench.measure.golden``)."""
    from strabench.data.synthetic import cache_root  # numpy: imported only when an entry is missing

    return cache_root() / COMPLEXITY_CACHE

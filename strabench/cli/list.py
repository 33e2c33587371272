"""List registered models (name, task, block, params, GMACs in the paper's convention)."""

from __future__ import annotations

from typing import Annotated

import typer


def list_command(
    pattern: Annotated[str, typer.Argument(help="Shell wildcard over model names, e.g. '*stra*'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    from strabench.cli._common import console, print_json
    from strabench.measure.golden import complexity_table
    from strabench.registry import list_models, model_info

    names = list_models(pattern)
    cache = complexity_table(names)
    rows = []
    for name in names:
        info = model_info(name)
        entry = cache.get(name, {})
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
    from rich.table import Table

    table = Table(title=f"strabench models ({len(rows)})", caption="GMACs: the paper's convention (conv+linear multiply-adds, one image)")
    for column, justify in (("name", "left"), ("task", "left"), ("block", "left"), ("input", "right"), ("params (M)", "right"), ("GMACs", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        params = f"{row['params'] / 1e6:.2f}" if row["params"] is not None else "?"
        macs = f"{row['macs_paper'] / 1e9:.3f}" if row["macs_paper"] is not None else "?"
        table.add_row(row["name"], row["task"], row["block"], "x".join(map(str, row["input"])), params, macs)
    console().print(table)

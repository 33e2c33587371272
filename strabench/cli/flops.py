"""Params and multiply-accumulates of a model under each counting convention, side by side.

Conventions: paper = multiply-adds of conv and linear layers (bias included), one image,
classifier excluded (what the StRA paper's "FLOPs" column counts); fvcore and ptflops = those
libraries, with handles for every attention op so nothing is skipped silently. Params: every
parameter except a registered model's training-only classifier (a torchvision, timm or user
model has none: all of its parameters are counted, its own head included).
"""

from __future__ import annotations

from typing import Annotated

import typer

from strabench.cli._complete import model_names
from strabench.errors import ConfigError


def flops_command(
    model: Annotated[str, typer.Argument(autocompletion=model_names, help="Registered name (see `strabench list`), torchvision:NAME, timm:NAME or package.module:callable.")],
    input: Annotated[str | None, typer.Option("--input", help="HEIGHTxWIDTH, default: the model's (e.g. 256x128).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Task the model is built for (reid, face, fer).")] = None,
    counter: Annotated[str, typer.Option("--counter", help="paper, fvcore, ptflops or all.")] = "all",
    by_module: Annotated[bool, typer.Option("--by-module", help="Also break MACs down by module.")] = False,
    replace: Annotated[list[str] | None, typer.Option("--replace", help="PATTERN=BLOCK: put a block in place of matching modules, or after them for a gate (se, eca, mode), e.g. 'layer4.*.conv2=stra' or 'layer4.*.conv2=stra(groups=4)' (repeatable; docs/blocks.md).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    from strabench.cli._common import parse_replace, parse_size, print_json
    from strabench.measure.report import complexity_report
    from strabench.registry import model_info

    info = model_info(model)
    conventions = ("paper", "fvcore", "ptflops") if counter == "all" else (counter,)
    if counter != "all" and counter not in ("paper", "fvcore", "ptflops"):
        raise ConfigError(f"--counter must be paper, fvcore, ptflops or all, got {counter!r}")
    size = info.input_size(parse_size(input) if input else None)
    result = complexity_report(
        model, size, task=task, conventions=conventions, by_module=by_module, replace=parse_replace(replace)
    )
    if as_json:
        print_json(result)
        return
    _render(result)


def _render(result: dict) -> None:
    from rich.markup import escape

    from strabench.cli._common import console
    from strabench.report.terminal import drop_empty_columns, print_table

    out = console()
    ref = result["paper_ref"]
    ref_params = ref["params_m"] if ref else None
    ref_macs = ref["gmacs"] if ref else None
    rows = [["params (M)", result.get("params_scope", "all but classifier"), f"{result['params'] / 1e6:.3f}", _fmt(ref_params),
             _delta(result["params"] / 1e6, ref_params)]]
    for convention, macs in result["macs"].items():
        paper_col = ref_macs if convention == "paper" else None
        rows.append(["GMACs", convention, f"{macs / 1e9:.3f}", _fmt(paper_col), _delta(macs / 1e9, paper_col)])
    headers, rows, _ = drop_empty_columns(["measure", "convention", "ours", "paper", "delta"], rows, keep=3)
    title = f"{model_label(result)} @ {'x'.join(map(str, result['input']))}"
    print_table(out, headers, rows, title=title, right=lambda index: index >= 2)
    for convention, ops in result["uncounted"].items():
        if ops:
            what = "left out (outside conv + linear layers)" if convention == "paper" else "could not count"
            out.print(f"[yellow]{convention} {what}: {escape(_summary(ops))}[/]", highlight=False)
    if ref:
        out.print(f"paper: {', '.join(ref['tables'])}", highlight=False)
    elif result.get("paper_note"):
        out.print(f"paper: no reference ({result['paper_note']})", highlight=False)
    if result.get("by_module"):
        from rich.table import Table

        detail = Table(title="GMACs by module")
        detail.add_column("module")
        conventions = list(result["macs"])
        for convention in conventions:
            detail.add_column(convention, justify="right")
        for name, values in result["by_module"].items():
            detail.add_row(name, *(f"{values.get(c, 0) / 1e9:.4f}" for c in conventions))
        out.print(detail)


def model_label(result: dict) -> str:
    """The model as measured: ``resnet50[layer4.*.conv2=stra]`` when blocks were put in (as ``bench`` names it)."""
    from strabench.measure.latency import replaced_label

    return replaced_label(result["model"], result["replace"]) if result.get("replace") else result["model"]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _delta(ours: float, paper: float | None) -> str:
    return "—" if paper is None else f"{ours - paper:+.3f}"


def _summary(items: list[str], show: int = 6) -> str:
    """The first few entries, then how many more (a ViT lists one attention per layer)."""
    head = ", ".join(items[:show])
    return head if len(items) <= show else f"{head} and {len(items) - show} more"

"""Heatmaps of each attention block over an image (the paper's Fig. 3).

For every StRA block: the G mode masks M_g and, for comparison, the per-group magnitude of the
local attention output, alpha-blended over the input, one PNG per block, one colour scale (with
its colour bar) per row. The checkpoint is read with weights_only (a strabench checkpoint or a
plain state_dict of the same model); a strabench checkpoint also gives the input size, task and
model settings it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def viz_command(
    model: Annotated[str, typer.Argument(help="Registered model name (e.g. resnet50_stra).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="checkpoint.pt of a run, or a state_dict file.")],
    image: Annotated[Path, typer.Option("--image", help="Image to visualise (resized to the model's input).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs (one per block).")] = Path("viz"),
    input: Annotated[str | None, typer.Option("--input", help="HEIGHTxWIDTH, default: the checkpoint's training input (else the model's, e.g. 256x128).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written PNG paths as a JSON list.")] = False,
) -> None:
    from strabench.cli._common import console, parse_size, print_json
    from strabench.report.attention_maps import visualise

    size = parse_size(input) if input else None
    written = visualise(model, checkpoint, image, out, size=size)
    if as_json:
        print_json([str(path) for path in written])
        return
    for path in written:
        console().print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("viz", help=__doc__)(viz_command)

"""Export a model to ONNX, checked against eager PyTorch before the file is written.

The model is exported through torch.onnx (StRA's local attention as standard ONNX ops) at
--batch images of --input size (default: the model's), or with a free batch axis
(--dynamic-batch). Its weights are random unless --checkpoint gives trained ones (a strabench
checkpoint or a state_dict, read with weights_only): the model is then built as it was trained
(input size, blocks, class count) and every tensor must fit. The file must pass onnx.checker
and onnxruntime's output must match eager PyTorch's on a random input within
max|diff| <= 1e-4 + 1e-4 * max|eager|; only then does it
replace PATH (atomically: on any failure an existing file is left as it was). Needs the onnx
extra: pip install 'strabench\\[onnx]'.
"""

# (the backslash above keeps --help's rich markup from reading [onnx] as a tag)

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strabench.cli._complete import model_names


def export_command(
    model: Annotated[str, typer.Argument(autocompletion=model_names, help="Registered model name (see `strabench list`).")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Where to write the .onnx file.")],
    input: Annotated[str | None, typer.Option("--input", help="HEIGHTxWIDTH, default: the model's (e.g. 256x128).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per call the graph is exported for.")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Leave the batch axis free (checked at --batch and --batch + 1).")] = False,
    replace: Annotated[list[str] | None, typer.Option("--replace", help="PATTERN=BLOCK: put a block in place of matching modules, e.g. 'layer4.*.conv2=stra' (repeatable).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Threads for the onnxruntime check, default: all cores.")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="checkpoint.pt of a training run, or a state_dict file (default: random weights).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    from strabench.cli._common import console, parse_replace, parse_size, print_json
    from strabench.errors import ConfigError
    from strabench.measure.runtimes import export_model

    if threads is not None and threads <= 0:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    from strabench.io import check_regular_target

    check_regular_target(onnx)  # a device or a link is refused now, not after the export's work
    size = parse_size(input) if input else None
    result = export_model(model, onnx, input_size=size, batch=batch, dynamic_batch=dynamic_batch,
                          replace=parse_replace(replace), threads=threads, checkpoint=checkpoint)
    if as_json:
        print_json(result)
        return
    weights = f"weights of {result['checkpoint']}" if result["checkpoint"] else "random weights"
    console().print(
        f"wrote {result['onnx']} ({result['bytes'] / 2**20:.1f} MB, {weights}, opset {result['opset']}, batch {result['batch']}, "
        f"input {result['channels']}x{result['input']}); onnxruntime vs eager max|diff| {result['max_abs_diff']:.2g} "
        f"(allowed {result['tolerance']})",
        highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    paragraphs = (" ".join(p.split()) for p in (__doc__ or "").split("\n\n"))
    app.command("export", help="\n\n".join(paragraphs))(export_command)

"""Evaluate saved weights (a training checkpoint or a state_dict) on a task's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from strabench.cli._complete import model_names
from strabench.cli.train import DATA_HELP


def register(app: typer.Typer) -> None:
    app.command("eval", help=__doc__)(eval_command)


def eval_command(
    model: Annotated[str, typer.Argument(autocompletion=model_names, help="The model the weights belong to: a registered name or a reference (torchvision:NAME ...).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="checkpoint.pt of a training run, or a state_dict file.")],
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP + " Default: the checkpoint's training data.")] = None,
    task: Annotated[Optional[str], typer.Option(help="reid | face | fer (default: the checkpoint's / the model's).")] = None,
    profile: Annotated[Optional[str], typer.Option(help="Recipe profile for defaults not stored in the checkpoint.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    batch: Annotated[Optional[int], typer.Option("--batch", help="Evaluation batch size.")] = None,
    input_size: Annotated[Optional[str], typer.Option("--input", help="Input HEIGHTxWIDTH (default: the checkpoint's).")] = None,
    amp: Annotated[str, typer.Option(help="auto | off | bf16 | fp16.")] = "auto",
    replace: Annotated[Optional[list[str]], typer.Option("--replace", help="PATTERN=BLOCK blocks the model was trained with, e.g. 'layer4.*.conv2=stra' (default: the checkpoint's registry blocks; blocks that are your code, package.module:Class, must be given here: a checkpoint never names code that runs).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from strabench.env import configure_process

    configure_process()  # allocator and OpenMP wait policy, before torch starts its thread pool
    from strabench.cli.train import render_metrics
    from strabench.cli._common import parse_replace, parse_size, print_json
    from strabench.train.config import TrainConfig
    from strabench.train.saved import evaluate_checkpoint

    cfg = TrainConfig(
        model=model,
        task=task,
        data=data,
        profile=profile,
        device=device,
        eval_batch_size=batch,
        input_size=parse_size(input_size) if input_size else None,
        amp=amp,
    )
    blocks = parse_replace(replace)
    if blocks:  # checked against the checkpoint's (strabench.train.trusted)
        import dataclasses

        cfg = dataclasses.replace(cfg, model_overrides={"replace": blocks})
    result = evaluate_checkpoint(cfg, checkpoint)
    if as_json:
        print_json(result)
        return
    epoch = f", epoch {result['epoch']}" if result.get("epoch") is not None else ""
    render_metrics(result, f"{model} on {result['data']} ({result['task']}){epoch}")

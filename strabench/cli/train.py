"""Train a registered model with its task's recipe (paper appendix B, or the quick CPU profile) and evaluate it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from strabench.cli._complete import model_names

PROFILE_HELP = "Recipe profile: 'quick' (minutes on a CPU, synthetic data) or 'paper' (appendix B values)."
DATA_HELP = (
    "Dataset: synthetic_reid | synthetic_faces | synthetic_expressions (generated, cached) or "
    "market1501:PATH | faces:PATH | fer2013:PATH. Default: the task's synthetic dataset."
)


def register(app: typer.Typer) -> None:
    app.command("train", help=__doc__)(train_command)


def build_config(
    model: str,
    *,
    task: str | None,
    data: str | None,
    profile: str,
    epochs: int | None,
    batch: int | None,
    lr: float | None,
    device: str,
    seed: int,
    pretrained: Path | None,
    amp: str,
    input_size: str | None,
    workers: int | None,
    channels_last: bool,
    eval_every: int | None,
    assignments: list[str],
    replace: list[str] | None = None,
) -> Any:
    """The TrainConfig the flags describe (unresolved); ``--replace`` joins ``model_overrides``."""
    import dataclasses

    from strabench.cli._common import parse_replace, parse_size
    from strabench.train.config import TrainConfig, apply_overrides

    cfg = TrainConfig(
        model=model,
        task=task,
        data=data,
        profile=profile,
        epochs=epochs,
        batch_size=batch,
        lr=lr,
        device=device,
        seed=seed,
        pretrained=str(pretrained) if pretrained is not None else None,
        amp=amp,
        input_size=parse_size(input_size) if input_size else None,
        num_workers=workers,
        channels_last=channels_last or None,
        eval_every=eval_every,
    )
    cfg = apply_overrides(cfg, assignments)
    blocks = parse_replace(replace)
    if blocks:
        cfg = dataclasses.replace(cfg, model_overrides={**(cfg.model_overrides or {}), "replace": blocks})
    return cfg


def _resume_command(model: str, given: dict[str, Any], out: Path) -> str:
    parts = ["strabench", "train", model]
    for flag, value in given.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts + ["--resume", "--out", str(out)])


def render_metrics(result: dict[str, Any], title: str) -> None:
    """Trained vs untrained metrics as a rich table."""
    from rich.table import Table

    from strabench.cli._common import console

    untrained = result.get("metrics_untrained") or {}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("trained", justify="right")
    if untrained:
        table.add_column("untrained", justify="right")
    for name, value in result["metrics"].items():
        row = [name, f"{value:.2f}"]
        if untrained:
            base = untrained.get(name)
            row.append(f"{base:.2f}" if isinstance(base, (int, float)) else "-")
        table.add_row(*row)
    console().print(table)


def train_command(
    model: Annotated[str, typer.Argument(autocompletion=model_names, help="Registered name (see `strabench list`), torchvision:NAME, timm:NAME or package.module:callable.")],
    task: Annotated[Optional[str], typer.Option(help="reid | face | fer (default: the model's task).")] = None,
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP)] = None,
    profile: Annotated[str, typer.Option(help=PROFILE_HELP)] = "quick",
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs (default: the recipe's).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Global batch size (default: the recipe's).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Initial learning rate (default: the recipe's).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, sampling and augmentation.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/<model>-<task>-s<seed>-<config hash>).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the run directory's checkpoint, or start over.")] = True,
    pretrained: Annotated[Optional[Path], typer.Option(help="Initialise from a local state_dict (e.g. ImageNet ResNet-50).")] = None,
    amp: Annotated[str, typer.Option(help="Mixed precision: auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16.")] = "auto",
    input_size: Annotated[Optional[str], typer.Option("--input", help="Input HEIGHTxWIDTH (default: the recipe's).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="DataLoader workers (default: 0 on CPU, up to 8 on CUDA).")] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Use channels_last memory format.")] = False,
    eval_every: Annotated[Optional[int], typer.Option(help="Also evaluate every N epochs, on a fixed subset of the test set (0: only at the end, on all of it).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    assignments: Annotated[Optional[list[str]], typer.Option("--set", help="Any config field, KEY=VALUE (TOML value), e.g. --set milestones=[8,12].")] = None,
    replace: Annotated[Optional[list[str]], typer.Option("--replace", help="PATTERN=BLOCK: put a block in place of matching modules, or after them for a gate (se, eca, mode), e.g. 'layer4.*.conv2=stra' or 'layer4.*.conv2=stra(groups=4)' (repeatable; docs/blocks.md).")] = None,
    allow_mixed: Annotated[bool, typer.Option("--allow-mixed", help="Resume a checkpoint that other code trained (another strabench, torch or kernel); recorded in env.json. Default: refused.")] = False,
    keep_checkpoints: Annotated[str, typer.Option("--keep-checkpoints", help="What a finished run keeps: last (checkpoint.pt), best (checkpoint.best.pt, best evaluated epoch) or none. While it runs, the last two are kept for resuming.")] = "last",
    as_json: Annotated[bool, typer.Option("--json", help="Print result.json instead of a table.")] = False,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Log the run to MLflow (experiment 'train'): params, curves, metrics, files; --mlflow URI for another store (default: sqlite:///<run dir's parent>/mlruns.db).")] = False,
    mlflow_uri: Annotated[Optional[str], typer.Option("--mlflow-uri", help="The MLflow tracking URI (implies --mlflow).", hidden=True)] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Also log the run to Weights & Biases (project 'train'; needs wandb).")] = False,
) -> None:
    from strabench.env import configure_process

    configure_process()  # allocator and OpenMP wait policy, before torch starts its thread pool
    from strabench.cli._common import console, print_json
    from strabench.data.tasks import check_data
    from strabench.train.config import config_hash, resolve
    from strabench.train.engine import check_keep_checkpoints

    check_keep_checkpoints(keep_checkpoints)

    cfg = resolve(
        build_config(
            model, task=task, data=data, profile=profile, epochs=epochs, batch=batch, lr=lr, device=device, seed=seed,
            pretrained=pretrained, amp=amp, input_size=input_size, workers=workers, channels_last=channels_last,
            eval_every=eval_every, assignments=list(assignments or []), replace=replace,
        )
    )
    check_data(cfg.data, cfg.task)  # a folder that is not the dataset: refused before announcing a run
    run_dir = out or Path("runs") / f"{cfg.model}-{cfg.task}-s{cfg.seed}-{config_hash(cfg)}"
    if threads is not None:
        import torch

        if threads < 1:
            from strabench.errors import ConfigError

            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    from strabench.train.engine import fit
    from strabench.train.progress import PlainProgress, RichProgress

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    from strabench.cli._tracking import log_runs, open_trackers

    trackers = open_trackers(experiment="train", out=run_dir.parent, mlflow=mlflow, mlflow_uri=mlflow_uri, wandb=wandb) if main_process else []
    err = console(stderr=True)
    hook = (RichProgress(err, batch_size=cfg.batch_size) if err.is_terminal else PlainProgress()) if main_process else None
    if main_process:
        err.print(f"training {cfg.model} ({cfg.task}, {cfg.data}, profile {cfg.profile}) -> {run_dir}")
    try:
        result = fit(cfg, run_dir, resume=resume, progress=hook, keep_checkpoints=keep_checkpoints, allow_mixed=allow_mixed)
    except KeyboardInterrupt as exc:
        from strabench.signals import interrupt_exit_code

        code = interrupt_exit_code(exc)
        given = {
            "--task": task, "--data": data, "--profile": profile if profile != "quick" else None, "--epochs": epochs,
            "--batch": batch, "--lr": lr, "--device": device if device != "auto" else None, "--seed": seed or None,
            "--pretrained": pretrained, "--amp": amp if amp != "auto" else None, "--input": input_size, "--workers": workers,
            "--channels-last": channels_last, "--eval-every": eval_every, "--set": list(assignments or []) or None,
            "--replace": list(replace or []) or None,
            "--keep-checkpoints": keep_checkpoints if keep_checkpoints != "last" else None,
            "--allow-mixed": allow_mixed,
        }
        if not main_process:
            raise typer.Exit(code) from None
        from strabench.cli import print_error

        how = "interrupted" if code == 130 else f"stopped by signal {code - 128}"
        print_error(f"{how}; completed epochs are checkpointed in {run_dir}")
        typer.echo(f"resume with: {_resume_command(model, given, run_dir)}", err=True)
        raise typer.Exit(code) from None
    finally:
        close = getattr(hook, "close", None)
        if close is not None:
            close()
    if not main_process:
        return
    log_runs(trackers, [run_dir], lambda text: err.print(text, highlight=False, markup=False, soft_wrap=True))
    if as_json:
        print_json(result)
        return
    console().print(f"results in {run_dir} (config {result['config_hash']}, {result['train_time_s']:.0f}s training)")
    render_metrics(result, f"{cfg.model} on {cfg.data} ({cfg.task}), {cfg.epochs} epochs")

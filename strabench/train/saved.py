"""Saved weights, read back: evaluate a checkpoint, or build the model it holds (``eval``, ``viz``,
``export``/``bench --checkpoint``).

A file is data: the model and any block that is user code come from the caller, checked against
what the file records (``strabench.train.trusted``); a strabench checkpoint that fails its
checksum is refused, never read as a plain state_dict.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from strabench.amp import amp_dtype, autocast_factory
from strabench.errors import CheckpointError
from strabench.metrics.resampling import CI_METHOD
from strabench.models.weights import load_state, read_state
from strabench.train.checkpoint import load_checkpoint, sidecar_path
from strabench.train.config import TrainConfig, config_from_mapping, resolve
from strabench.train.distributed import pick_device
from strabench.train.engine import _plain, resolve_num_workers
from strabench.train.evaluation import STRATEGIES, Predictor
from strabench.train.trusted import build_options

__all__ = ["evaluate_checkpoint", "model_from_checkpoint", "read_weights"]


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """(state_dict, the training config if the file is a strabench checkpoint, other info): how
    ``eval`` and ``viz`` read saved weights (a checksum failure of our checkpoint never falls back)."""
    from strabench.train.checkpoint import CorruptCheckpointError

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = load_checkpoint(path)
    except CorruptCheckpointError:
        if sidecar_path(path).exists():
            raise  # a strabench checkpoint that fails its checksum: never fall back
        return read_state(path), None, {}
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} has no model weights")
    saved = state.get("config") if isinstance(state.get("config"), dict) else None
    return weights, saved, {"epoch": state.get("epoch"), "config_hash": state.get("config_hash")}


def evaluate_checkpoint(cfg: TrainConfig, checkpoint_path: Path | str, *, cache_dir: Path | str | None = None) -> dict[str, Any]:
    """Evaluate saved weights (a strabench checkpoint or a plain state_dict) on ``cfg``'s test split.

    For a strabench checkpoint the model's build options (``input_size``, ``model_overrides``) and
    default task/data come from the training config stored in it, unless ``cfg`` sets them; a
    checkpoint of another model is refused, and so is one whose blocks are user code that
    ``cfg.model_overrides`` does not name (``strabench.train.trusted``). Returns ``{"model", "task", "data", "checkpoint",
    "epoch", "metrics", "details", ...}``.
    """
    from strabench.registry import create_model, model_info

    path = Path(checkpoint_path)
    weights, saved, info = read_weights(path)
    if saved is not None:
        if saved.get("model") != cfg.model:
            raise CheckpointError(f"{path} is a checkpoint of model {saved.get('model')!r}, not {cfg.model!r}")
        trained = config_from_mapping(saved, source=str(path))
        same_data = cfg.data is None or cfg.data == trained.data
        cfg = replace(
            cfg,
            task=cfg.task or trained.task,
            data=cfg.data or trained.data,
            input_size=cfg.input_size or trained.input_size,
            # the file's options, but code only where the caller names it (strabench.train.trusted)
            model_overrides=build_options(trained.model_overrides or {}, cfg.model_overrides, str(path)),
            profile=cfg.profile or trained.profile,
            data_sizes=cfg.data_sizes if cfg.data_sizes is not None or not same_data else trained.data_sizes,
            data_seed=cfg.data_seed if cfg.data_seed is not None else trained.data_seed,
        )
    cfg = resolve(cfg)
    strategy = STRATEGIES[cfg.task]
    device = pick_device(cfg.device)
    from strabench.data import build_task_data

    data = build_task_data(cfg.data, cfg.task, input_size=tuple(cfg.input_size), augment=False, seed=cfg.data_seed,
                           cache_dir=cache_dir, sizes=cfg.data_sizes or None)
    classifier = weights.get("classifier.weight")
    num_classes = int(classifier.shape[0]) if isinstance(classifier, torch.Tensor) else data.num_classes
    kwargs = dict(cfg.model_overrides)
    if strategy.sized_input or model_info(cfg.model).source != "registry" or kwargs.get("replace"):
        # external: probed at this input; replace: blocks fitted to the map they see
        kwargs["input_size"] = tuple(cfg.input_size)
    model = create_model(cfg.model, task=cfg.task, num_classes=num_classes, **kwargs)
    model.check_input((2, model_info(cfg.model).default_input[0], *cfg.input_size))
    load_state(path, model, strict=True, state=weights)  # every tensor must fit, the classifier included
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = autocast_factory(device, amp_dtype(cfg.amp, device))
    predictor = Predictor(device=device, batch_size=cfg.eval_batch_size, num_workers=resolve_num_workers(cfg.num_workers, device, 1),
                          autocast=autocast, channels_last=cfg.channels_last)
    started = time.perf_counter()
    result = strategy.evaluate(model, data, predictor)
    return _plain({
        "model": cfg.model,
        "task": cfg.task,
        "data": cfg.data,
        "checkpoint": str(path),
        "epoch": info.get("epoch"),
        "trained_config_hash": info.get("config_hash"),
        "metrics": result.metrics,
        "metrics_ci95": result.intervals,
        "test_size": result.test_size,
        "ci_method": CI_METHOD,
        "details": result.extra,
        "input_size": list(cfg.input_size),
        "device": str(device),
        "eval_time_s": time.perf_counter() - started,
    })


def model_from_checkpoint(
    model_name: str, checkpoint: Path, size: tuple[int, int] | None = None, blocks: "dict[str, str] | None" = None
) -> tuple[nn.Module, str, tuple[int, int]]:
    """(model with the checkpoint's weights, task, input size) for inference.

    A strabench checkpoint carries its training config: the model is built as it was trained
    (task, input size, ``model_overrides``) unless ``size`` overrides the input, and with the
    checkpoint's number of classes, so every tensor, the classifier included, loads strictly.
    ``blocks`` (PATTERN -> BLOCK, as ``--replace``) must be the checkpoint's, and are needed
    where it names user code or is a plain state_dict of a model trained with ``--replace``
    (``strabench.train.trusted``: a file never names code that is imported).
    """
    from strabench.registry import create_model, model_info

    info = model_info(model_name)
    weights, saved, _ = read_weights(Path(checkpoint))
    task = info.default_task
    given = {"replace": dict(blocks)} if blocks else None
    overrides = build_options(None, given, str(checkpoint))
    trained_size = (info.default_input[1], info.default_input[2])
    if saved is not None:
        if saved.get("model") != model_name:
            raise CheckpointError(f"{checkpoint} is a checkpoint of model {saved.get('model')!r}, not {model_name!r}")
        trained = config_from_mapping(saved, source=str(checkpoint))
        task = trained.task or task
        # the file's options, but code only where the caller names it (strabench.train.trusted)
        overrides = build_options(trained.model_overrides or {}, given, str(checkpoint))
        trained_size = tuple(trained.input_size) if trained.input_size else trained_size
    size = tuple(size or trained_size)
    classifier = weights.get("classifier.weight")
    if classifier is not None:
        overrides["num_classes"] = int(classifier.shape[0])
    if info.source != "registry":  # a feature extractor from elsewhere is probed at this input
        overrides["input_size"] = size
    model = create_model(model_name, task=task, **overrides)
    if getattr(model, "fixed_input", None) is not None and tuple(model.fixed_input) != size:
        model = create_model(model_name, task=task, input_size=size, **overrides)
    model.check_input((1, info.default_input[0], *size))
    load_state(checkpoint, model, strict=True, state=weights, name=model_name)
    return model, task, size

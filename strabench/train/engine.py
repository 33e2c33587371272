# Over 600 lines on purpose: the training loop, its resume and its files are one sequence whose guarantees (exact resume, no NaN checkpoint) a reader must see whole.
"""The training engine: one loop for ReID, face and FER; resumable, exact, rank-aware.

``fit(cfg, out_dir)`` trains a registered model with its task's recipe and evaluates it on the
held-out split, writing into ``out_dir``::

    config.toml      the resolved config (its hash names the run)
    env.json         versions, device, threads, world size
    metrics.jsonl    one line per epoch: epoch, loss, ce, aux, diversity, lr, time_s, images_per_s, steps,
                     frozen; ``eval`` (the test metrics) on the last epoch; ``eval_subset`` and
                     ``eval_subset_items`` (metrics on a fixed subset of the test set, and how many
                     items each averages) on the epochs ``eval_every`` evaluates
    metrics.csv      the same as a table, and TensorBoard event files (train/tracking.py)
    checkpoint.pt    after every epoch (+ checkpoint.prev.pt), kill-safe, via train/checkpoint.py;
                     at the end of the run ``keep_checkpoints`` decides what stays (``KEEP_CHECKPOINTS``)
    per_item.csv     each test item's score at the end (``strabench.metrics.per_item``)
    result.json      written last: status, metrics, metrics_untrained, details, times, params

Why each design choice:

* **Exact resume.** Every epoch's randomness (sampler order, augmentation, dropout, worker
  seeds) is drawn from generators re-seeded with ``(seed, epoch, rank)`` at the start of the
  epoch, and the checkpoint holds model, optimizer, LR scheduler, grad scaler and RNG states.
  So "2 epochs" and "1 epoch, kill, resume 1 epoch" give bit-identical weights on CPU.
* **Never a NaN checkpoint.** A non-finite loss (checked before its backward pass on CPU, at
  the next sync point on GPU) or non-finite weights at the end of an epoch raise
  ``NumericalError`` naming the epoch and step; checkpoints are only written after an epoch
  passed those checks, so the last good one is kept.
* **Honest numbers.** The freshly initialised model is evaluated on the same split before
  training (``metrics_untrained``), so "it learned" is a comparison, not a claim. Only the final
  epoch's model is reported (no best-epoch picking on the test split).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from strabench.amp import amp_dtype, autocast_factory
from strabench.env import describe_environment
from strabench.errors import CheckpointError, ConfigError, NumericalError, clip
from strabench.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from strabench.locks import acquire_lock, remove_stale_temps
from strabench.optim import build_optimizer, set_impl
from strabench.train import recipes
from strabench.train.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_latest_good,
    previous_path,
    restore_rng_state,
    save_checkpoint,
    sidecar_path,
)
from strabench.train.config import TrainConfig, config_hash, config_to_dict, resolve, to_toml
from strabench.train.distributed import DistContext, init_distributed, pick_device, shutdown_distributed
from strabench.metrics.per_item import PER_ITEM_CSV
from strabench.metrics.resampling import CI_METHOD
from strabench.provenance import check_resume, code_identity, env_segments, identity_of, record_segment, run_code_ids
from strabench.train.evaluation import STRATEGIES, EvalResult, Predictor
from strabench.train.losses import aux_weights_for
from strabench.train.progress import ProgressHook, call_hook, default_progress
from strabench.train.tracking import EpochLog

__all__ = ["Trainer", "fit", "lr_factor", "ProgressHook"]

RUN_FILES = ("config.toml", "env.json", "metrics.jsonl", PER_ITEM_CSV, "result.json")
WARMUP_START = 0.1


# --- small pure helpers -------------------------------------------------------------------------


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    """Multiplier of ``cfg.lr`` after ``progress`` epochs (a float: warm-up is per step).

    Decay is piecewise constant per epoch (see ``TrainConfig``); warm-up rises linearly from
    ``WARMUP_START`` to 1 over ``warmup_epochs``.
    """
    warm = 1.0
    if cfg.warmup_epochs and progress < cfg.warmup_epochs:
        warm = WARMUP_START + (1.0 - WARMUP_START) * progress / cfg.warmup_epochs
    epoch = int(math.floor(progress + 1e-9))
    if cfg.milestones:
        decay = cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)
    elif cfg.lr_step and epoch >= cfg.lr_decay_start:
        decay = cfg.lr_gamma ** ((epoch - cfg.lr_decay_start) // cfg.lr_step)
    else:
        decay = 1.0
    return warm * decay


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed that depends on (seed, epoch, rank) only: the epoch's whole random stream."""
    words = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_num_workers(value: int | str, device: torch.device, world_size: int) -> int:
    """``auto``: 0 on CPU (decoding competes with the model for the same cores), else up to 8 per rank."""
    if value != "auto":
        return int(value)
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // max(world_size, 1) - 1))


def _plain(obj: Any) -> Any:
    """numpy scalars / tuples -> plain Python, so records are JSON- and checkpoint-storable."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --- the trainer --------------------------------------------------------------------------------


class Trainer:
    """Data, model, optimiser and one-epoch loop for a resolved config on one rank.

    ``fit`` drives it; ``benchmarks/train_overhead.py`` uses it to time the real loop.
    """

    def __init__(self, cfg: TrainConfig, ctx: DistContext | None = None, *, cache_dir: Path | str | None = None) -> None:
        from strabench.measure.memory import check_fits_in_memory
        from strabench.registry import create_model, model_info

        self.cfg = cfg
        self.ctx = ctx or DistContext(device=pick_device(cfg.device))
        self.device = self.ctx.device
        self.strategy = STRATEGIES[cfg.task]
        self.info = model_info(cfg.model)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.num_workers = resolve_num_workers(cfg.num_workers, self.device, self.ctx.world_size)
        self.aux_weights = aux_weights_for(cfg.diversity_weight)
        self.sync_every = 1 if self.device.type == "cpu" else 25
        world = self.ctx.world_size
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the number of processes ({world})")
        self.rank_batch = cfg.batch_size // world
        self.trainable_prefixes: tuple[str, ...] = ()
        if cfg.freeze_epochs:
            if self.info.family not in recipes.TRAINABLE_WHILE_FROZEN:
                raise ConfigError(f"freeze_epochs is not supported for model family {self.info.family!r} ({cfg.model})")
            self.trainable_prefixes = recipes.TRAINABLE_WHILE_FROZEN[self.info.family]

        kwargs = dict(cfg.model_overrides)
        if self.strategy.sized_input or kwargs.get("replace"):  # replace: blocks fitted to the map they see
            if tuple(kwargs.get("input_size", cfg.input_size)) != tuple(cfg.input_size):
                raise ConfigError(f"model_overrides input_size {kwargs['input_size']} disagrees with input_size {cfg.input_size}")
            kwargs["input_size"] = tuple(cfg.input_size)
        elif self.info.source != "registry":  # a feature extractor from elsewhere is probed at the run's input
            kwargs["input_size"] = tuple(cfg.input_size)
        # Fail on an input size the model cannot take, or no batch of which fits in memory,
        # before generating or reading any data (shapes only: built on the meta device).
        # A registry model is built as the plan checked it (its own classifier size), so the memory
        # check's memo answers and the model is not run on the meta device again; a model from
        # elsewhere needs a classifier size to come wrapped (``check_input``).
        sized = {} if self.info.source == "registry" else {"num_classes": 1}
        with torch.device("meta"):
            meta = create_model(cfg.model, task=cfg.task, **sized, **kwargs)
        meta.check_input((2, self.info.default_input[0], *cfg.input_size))
        check_fits_in_memory(meta, (1, self.info.default_input[0], *cfg.input_size), what=f"{cfg.model} input_size")

        # Data: rank 0 first, so that only one process generates a synthetic dataset.
        self.data = None
        if self.ctx.is_main:
            self.data = self._build_data(cache_dir)
        self.ctx.barrier()
        if self.data is None:
            self.data = self._build_data(cache_dir)
        if len(self.data.train) < cfg.batch_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set ({len(self.data.train)} images)")

        seed_everything(cfg.seed)
        model = create_model(cfg.model, task=cfg.task, num_classes=self.data.num_classes, pretrained=cfg.pretrained, **kwargs)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model: nn.Module = model
        self.wrapped: nn.Module = self._wrap()
        self._wrapped_frozen = False  # every parameter required grad when DDP wrapped the model
        self._frozen: bool | None = None

        hyper = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer != "adam":
            hyper["momentum"] = cfg.momentum
        self.optimizer, self.optimizer_impl = build_optimizer(cfg.optimizer, model.parameters(), **hyper)
        self.generator = torch.Generator()
        self.train_loader = self._train_loader()
        self.steps_per_epoch = len(self.train_loader)
        steps = self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(cfg, it / steps))
        self.predictor = Predictor(
            device=self.device,
            batch_size=cfg.eval_batch_size,
            num_workers=self.num_workers,
            autocast=self.autocast,
            channels_last=cfg.channels_last,
        )

    # -- construction helpers

    def _build_data(self, cache_dir: Path | str | None) -> Any:
        from strabench.data import build_task_data

        return build_task_data(
            self.cfg.data,
            self.cfg.task,
            input_size=tuple(self.cfg.input_size),
            augment=True,
            seed=self.cfg.data_seed,
            cache_dir=cache_dir,
            sizes=self.cfg.data_sizes or None,
        )

    def _wrap(self) -> nn.Module:
        if not self.ctx.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _train_loader(self) -> DataLoader:
        if self.ctx.distributed:
            sampler: Any = DistributedSampler(
                self.data.train, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                shuffle=True, seed=self.cfg.seed, drop_last=True,
            )
        else:
            sampler = RandomSampler(self.data.train, generator=self.generator)
        return DataLoader(
            self.data.train,
            batch_size=self.rank_batch,
            sampler=sampler,
            drop_last=True,  # a last batch of 1 breaks BatchNorm and skews the epoch mean
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=self.generator,  # worker seeds come from the epoch's generator too
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast_factory(self.device, self.amp_dtype)()

    # -- freezing (App. B.1: stages 1-4 frozen for the first epochs with pretrained weights)

    def _is_trainable(self, name: str) -> bool:
        return any((name + ".").startswith(p) for p in self.trainable_prefixes)

    def _set_frozen(self, frozen: bool) -> None:
        if frozen == self._frozen:
            return
        for name, param in self.model.named_parameters():
            param.requires_grad_(not frozen or self._is_trainable(name))
        if self.ctx.distributed and frozen != self._wrapped_frozen:
            self.wrapped = self._wrap()  # DDP fixes its set of gradient-carrying parameters at wrap time
            self._wrapped_frozen = frozen
        self._frozen = frozen

    def _train_mode(self, frozen: bool) -> None:
        self.model.train()
        if not frozen:
            return
        for name, module in self.model.named_modules():
            ancestor = any(p.startswith(name + ".") for p in self.trainable_prefixes)
            if name and not self._is_trainable(name) and not ancestor:
                module.eval()  # frozen BN keeps its (pretrained) running statistics

    # -- one epoch

    def _batches(self) -> Iterator[tuple[torch.Tensor, Any]]:
        for batch in self.train_loader:
            images = batch[0].to(self.device, non_blocking=True)
            if self.cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, batch

    def _raise_diverged(self, epoch: int, step: int, what: str) -> None:
        raise NumericalError(
            f"training diverged at epoch {epoch}, step {step}/{self.steps_per_epoch}: {what}; "
            f"{self.last_good_hint} (try a lower --lr)"
        )

    last_good_hint = "no checkpoint was written"

    def run_epoch(self, epoch: int, *, hook: Any = None, max_steps: int | None = None) -> dict[str, Any]:
        """Train epoch ``epoch`` (1-based); returns its metrics.jsonl record (averaged over ranks)."""
        cfg = self.cfg
        frozen = epoch <= cfg.freeze_epochs
        self._set_frozen(frozen)
        self._train_mode(frozen)
        seed = epoch_seed(cfg.seed, epoch, self.ctx.rank)
        seed_everything(seed)
        self.generator.manual_seed(seed)
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)
        total = self.steps_per_epoch if max_steps is None else min(max_steps, self.steps_per_epoch)
        call_hook(hook, "on_epoch_start", epoch, cfg.epochs)

        names = sorted(self.aux_weights)
        sums = torch.zeros(3 + len(names), dtype=torch.float64, device=self.device)
        pending: list[tuple[int, torch.Tensor]] = []
        images_seen = 0
        lr_used = self.optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        step = 0
        for step, (images, batch) in enumerate(self._batches(), start=1):
            with self.autocast():
                output = self.wrapped(images)
                parts = self.strategy.loss(output, batch, self.aux_weights, self.device)
            total_loss = parts.total.detach()
            pending.append((step, total_loss))
            if step % self.sync_every == 0 or step == total:
                self._check_pending(pending, epoch, parts)
                call_hook(hook, "on_step", step, total, float(total_loss))
                pending = []
            self.optimizer.zero_grad(set_to_none=True)
            lr_used = self.optimizer.param_groups[0]["lr"]
            try:
                if self.scaler is not None:
                    self.scaler.scale(parts.total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    parts.total.backward()
                    self.optimizer.step()
            except RuntimeError as exc:
                # a finite but huge lr (1e300) overflows float32 inside the update: divergence too
                if "overflow" not in str(exc):
                    raise
                self._raise_diverged(epoch, step, f"the optimizer step overflowed at lr {lr_used:g} ({clip(str(exc), 120)})")
            self.scheduler.step()
            row = [total_loss, parts.ce.detach(), parts.weighted_aux] + [parts.aux.get(n, total_loss.new_zeros(())) for n in names]
            sums += torch.stack([v.to(torch.float64) for v in row])
            images_seen += images.shape[0]
            if step >= total:
                break
        if pending:
            self._check_pending(pending, epoch, None)
        elapsed = time.perf_counter() - started
        reduced = self.ctx.all_reduce_sum(sums.tolist() + [float(step), float(images_seen)])
        steps_all, images_all = reduced[-2], reduced[-1]
        means = [v / max(steps_all, 1.0) for v in reduced[: 3 + len(names)]]
        if self.ctx.any_rank(not self._weights_finite()):
            self._raise_diverged(epoch, step, "the weights contain NaN/inf after the epoch")
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": means[0],
            "ce": means[1],
            "aux": means[2],
            **{n: means[3 + i] for i, n in enumerate(names)},
            "lr": float(lr_used),
            "time_s": elapsed,
            "images_per_s": images_all / max(elapsed, 1e-9),
            "steps": step,
            "frozen": frozen,
        }
        return record

    def _check_pending(self, pending: list[tuple[int, torch.Tensor]], epoch: int, parts: Any) -> None:
        values = torch.stack([t.float() for _, t in pending]).cpu()
        bad = ~torch.isfinite(values)
        if self.ctx.any_rank(bool(bad.any())):
            if bad.any():
                index = int(bad.nonzero()[0, 0])
                step, value = pending[index][0], float(values[index])
                detail = f"loss is {value}"
                if parts is not None and index == len(pending) - 1:
                    aux = ", ".join(f"{k} {float(v):.4g}" for k, v in parts.aux.items())
                    detail += f" (ce {float(parts.ce.detach()):.4g}{', ' + aux if aux else ''})"
            else:
                step, detail = pending[0][0], "loss is NaN/inf on another rank"
            self._raise_diverged(epoch, step, detail)

    def _weights_finite(self) -> bool:
        flags = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack(flags).all()) if flags else True

    # -- evaluation and state

    def evaluate(self, *, subset: bool = False) -> EvalResult:
        """Evaluate the (unwrapped) model on the task's held-out split (call on rank 0); with
        ``subset``, on its fixed subset for periodic evaluation (``TaskStrategy.subset``)."""
        if not subset:
            return self.strategy.evaluate(self.model, self.data, self.predictor)
        if getattr(self, "_subset_data", None) is None:
            self._subset_data = self.strategy.subset(self.data)
        return self.strategy.evaluate(self.model, self._subset_data, self.predictor)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": capture_rng_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_impl(self.optimizer, self.optimizer_impl)
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint does not fit this run ({first})") from None
        restore_rng_state(state["rng"])


# --- fit ----------------------------------------------------------------------------------------


def _env_info(trainer: Trainer) -> dict[str, Any]:
    """env.json: the machine (``strabench.env.describe_environment``, at the start: the code this
    run trains with) plus how this run uses it."""
    return {
        **describe_environment(str(trainer.device)),
        "world_size": trainer.ctx.world_size,
        "num_workers": trainer.num_workers,
        "amp_dtype": str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp_dtype else "off",
        "optimizer_impl": trainer.optimizer_impl,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _finished_result(out_dir: Path, chash: str) -> dict[str, Any] | None:
    path = out_dir / "result.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(result, dict) and result.get("status") == "finished" and result.get("config_hash") == chash:
        return result
    return None


def _clear_run(out_dir: Path) -> None:
    """--no-resume: forget a previous run in this directory (only the files fit writes)."""
    checkpoint = out_dir / CHECKPOINT_NAME
    best = checkpoint.with_name(BEST_CHECKPOINT_NAME)
    for path in (checkpoint, previous_path(checkpoint), sidecar_path(checkpoint), sidecar_path(previous_path(checkpoint)),
                 best, previous_path(best), sidecar_path(best), sidecar_path(previous_path(best))):
        path.unlink(missing_ok=True)
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _rewind_metrics(out_dir: Path, epoch: int, record: dict[str, Any] | None) -> None:
    """Make metrics.jsonl hold exactly epochs 1..epoch after a resume from ``epoch``'s checkpoint.

    Lines of epochs after the checkpoint (trained, then killed before the next save) are
    dropped; the checkpointed epoch's line, if the kill came between save and append, is
    restored from the copy the checkpoint keeps.
    """
    path = out_dir / "metrics.jsonl"
    records = read_jsonl(path).records if path.is_file() else []
    kept = [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]
    if record is not None and not any(r["epoch"] == epoch for r in kept):
        kept.append(record)
    if kept != records:
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


#: What stays on disk once a run has finished (while it runs, checkpoint.pt and its previous
#: copy are kept so a kill can resume): "last" the final epoch's checkpoint.pt, "best" only
#: checkpoint.best.pt, the evaluated epoch (``eval_every``; the final epoch is always
#: evaluated) with the highest headline metric -- kept for later use, the reported numbers stay
#: the final epoch's --, "none" no checkpoint. A ResNet-50 checkpoint (weights, Adam state,
#: RNG state) is about 212 MB, so "last" halves the disk a finished run needs.
KEEP_CHECKPOINTS = ("last", "best", "none")
BEST_CHECKPOINT_NAME = "checkpoint.best.pt"


def check_keep_checkpoints(value: str) -> str:
    if value not in KEEP_CHECKPOINTS:
        raise ConfigError(f"--keep-checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, got {value!r}")
    return value


def _remove_checkpoint(path: Path) -> None:
    for target in (path, sidecar_path(path)):
        target.unlink(missing_ok=True)


def _retain_checkpoints(out_dir: Path, keep: str) -> None:
    """Apply ``keep`` to a finished run's directory (see ``KEEP_CHECKPOINTS``)."""
    checkpoint = out_dir / CHECKPOINT_NAME
    _remove_checkpoint(previous_path(checkpoint))
    _remove_checkpoint(previous_path(out_dir / BEST_CHECKPOINT_NAME))
    if keep != "last":
        _remove_checkpoint(checkpoint)
    if keep != "best":
        _remove_checkpoint(out_dir / BEST_CHECKPOINT_NAME)


def fit(
    cfg: TrainConfig,
    out_dir: Path | str,
    *,
    resume: bool = True,
    progress: ProgressHook | None = None,
    cache_dir: Path | str | None = None,
    keep_checkpoints: str = "last",
    allow_mixed: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` (resuming from its checkpoint if ``resume``) and evaluate.

    Once the run has finished, only the checkpoints ``keep_checkpoints`` names stay
    (``KEEP_CHECKPOINTS``; default: the last one). Resuming a checkpoint that other code
    trained raises ``strabench.provenance.MixedCodeError`` unless ``allow_mixed`` (then the mix
    is recorded); every segment's environment and code identity goes into env.json.

    Returns the ``result.json`` dict. A finished run with the same config hash is returned
    as is. ``resume=False`` starts over, replacing the run files in ``out_dir``. Raises
    ``NumericalError`` on divergence (the last good checkpoint stays), ``CheckpointError`` if
    ``out_dir`` holds a checkpoint of another config, ``LockError`` if another process uses it.
    Under torchrun every rank calls ``fit``; all return rank 0's result.
    """
    cfg = resolve(cfg)
    chash = config_hash(cfg)
    out_dir = Path(out_dir)
    ctx = init_distributed(cfg.device)
    try:
        check_keep_checkpoints(keep_checkpoints)
        existing = _finished_result(out_dir, chash) if (resume and ctx.is_main) else None
        existing = ctx.broadcast_object(existing)
        if existing is not None:
            return existing
        trainer = Trainer(cfg, ctx, cache_dir=cache_dir)
        hook = progress if progress is not None else (default_progress(cfg.batch_size) if ctx.is_main else None)
        if not ctx.is_main:
            hook = None
        try:
            return _fit(trainer, chash, out_dir, resume, hook, keep_checkpoints, allow_mixed)
        finally:
            close = getattr(hook, "close", None) if progress is None else None
            if close is not None:
                close()
    finally:
        shutdown_distributed(ctx)


def _fit(trainer: Trainer, chash: str, out_dir: Path, resume: bool, hook: Any, keep: str = "last",
         allow_mixed: bool = False) -> dict[str, Any]:
    cfg, ctx = trainer.cfg, trainer.ctx
    main = ctx.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    lock = acquire_lock(out_dir) if main else contextlib.nullcontext()
    with lock, EpochLog(out_dir) as tracks:  # metrics.csv + TensorBoard events (strabench.train.tracking)
        checkpoint = out_dir / CHECKPOINT_NAME
        if main:  # temp files of writes a kill interrupted (never ours: we hold the lock)
            remove_stale_temps(out_dir)
        if main and not resume:
            _clear_run(out_dir)
        ctx.barrier()
        start_epoch, train_time = 0, 0.0
        untrained: dict[str, Any] | None = None
        final: dict[str, Any] | None = None
        last_record: dict[str, Any] | None = None
        best: float | None = None  # headline metric of checkpoint.best.pt (keep == "best")
        headline = (trainer.strategy.headline or (None,))[0]
        code = code_identity(str(trainer.device))
        mixed = False
        if resume and (checkpoint.is_file() or previous_path(checkpoint).is_file()):
            try:
                state, used, _ = load_latest_good(out_dir, expected_config_hash=chash)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc} (use --no-resume to start over, or another --out)") from None
            mixed = _check_same_code(out_dir, state, code, allow_mixed)
            trainer.load_state(state)
            start_epoch = int(state["epoch"])
            train_time = float(state.get("train_time_s", 0.0))
            untrained = state.get("untrained")
            final = state.get("final")
            last_record = state.get("record")
            best = state.get("best_metric")
            trainer.last_good_hint = f"the last good checkpoint is {used} (epoch {start_epoch})"
            if main:
                _rewind_metrics(out_dir, start_epoch, last_record)
        if main:
            atomic_write_text(out_dir / "config.toml", to_toml(cfg))
            env = _env_info(trainer)
            env["resumed_from_epoch"] = start_epoch
            record_segment(out_dir, env, code, mixed=mixed)  # every segment's, never overwritten

        if untrained is None:
            untrained = _evaluate_on_main(trainer, "untrained", hook)

        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            record = trainer.run_epoch(epoch, hook=hook)
            train_time += record["time_s"]
            if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):  # periodic: a fixed subset
                periodic = _evaluate_on_main(trainer, None, None, subset=True)
                if main:
                    record.update(_subset_fields(periodic))
            if epoch == cfg.epochs:  # the run's score: the full test set, once
                evaluated = _evaluate_on_main(trainer, None, None)
                if main:
                    record["eval"] = evaluated["metrics"]
                    final = evaluated
            record = _plain(record)
            if main:
                state = trainer.state()
                state.update(
                    epoch=epoch, train_time_s=train_time, untrained=untrained, final=final, record=record,
                    config=config_to_dict(cfg), config_hash=chash, model_name=cfg.model,
                    code={k: v for k, v in code.items() if k != "code_id"},
                )
                score = _selection_score(record, headline) if keep == "best" else None
                improved = score is not None and (best is None or score > best)
                if improved:
                    best = float(score)
                state["best_metric"] = best
                save_checkpoint(checkpoint, state, config_hash=chash)
                if improved:
                    save_checkpoint(out_dir / BEST_CHECKPOINT_NAME, state, config_hash=chash)
                trainer.last_good_hint = f"the last good checkpoint is {checkpoint} (epoch {epoch})"
                append_jsonl(out_dir / "metrics.jsonl", record)
                tracks.log(record, untrained=(untrained or {}).get("metrics"))
                call_hook(hook, "on_epoch_end", epoch, record)
            ctx.barrier()
            last_record = record

        result = None
        if main:
            if final is None:  # resumed after the last epoch's checkpoint, before result.json
                final = _evaluate_on_main(trainer, None, None)
            call_hook(hook, "on_eval", "final", final["metrics"])
            result = _plain(_result(trainer, chash, out_dir, final, untrained, train_time, last_record))
            ids = run_code_ids(env_segments(out_dir)) or [code["code_id"]]
            result.update(code_id=code["code_id"], code_ids=ids, mixed_code=len(ids) > 1)
            result["per_item"] = _write_per_item(out_dir, final)
            atomic_write_json(out_dir / "result.json", result)
            _retain_checkpoints(out_dir, keep)  # after result.json: a kill before it can still resume
        return ctx.broadcast_object(result)


def _check_same_code(out_dir: Path, state: dict[str, Any], code: dict[str, Any], allow_mixed: bool) -> bool:
    """Whether resuming ``state`` mixes code (refused unless ``allow_mixed``, see
    ``strabench.provenance``): the checkpoint's recorded code, else env.json's latest segment's."""
    previous = identity_of(state.get("code"))
    if previous is None:
        segments = env_segments(out_dir)
        previous = identity_of(segments[-1]) if segments else None
    return check_resume(previous, code, where=str(out_dir), epoch=int(state.get("epoch") or 0), allow_mixed=allow_mixed)


def _evaluate_on_main(trainer: Trainer, name: str | None, hook: Any, *, subset: bool = False) -> dict[str, Any] | None:
    """Rank 0 evaluates while the others wait (see distributed.py for why). The final evaluation
    (not ``name``d, not a subset) keeps each item's score, as plain columns a checkpoint can hold."""
    evaluated = None
    if trainer.ctx.is_main:
        started = time.perf_counter()
        result = trainer.evaluate(subset=subset)
        evaluated = _plain({"metrics": result.metrics, "extra": result.extra, "intervals": result.intervals,
                            "test_size": result.test_size, "time_s": time.perf_counter() - started})
        if result.per_item is not None and name is None and not subset:
            evaluated["per_item"] = _plain({"columns": result.per_item.columns, "metrics": list(result.per_item.metrics)})
        if name is not None:
            call_hook(hook, "on_eval", name, result.metrics)
    trainer.ctx.barrier()
    return evaluated


def _subset_fields(evaluated: dict[str, Any] | None) -> dict[str, Any]:
    """A periodic evaluation's metrics.jsonl fields: named as the subset's, never as the test score."""
    if evaluated is None:
        return {}
    return {"eval_subset": evaluated["metrics"], "eval_subset_items": evaluated["test_size"]}


def _selection_score(record: dict[str, Any], headline: str | None) -> float | None:
    """What ``keep_checkpoints="best"`` ranks epochs by: the fixed subset's headline metric (every
    evaluated epoch has one when ``eval_every`` is set), else the only evaluation, the last epoch's."""
    subset = record.get("eval_subset")
    return (subset if subset else record.get("eval") or {}).get(headline)


def _write_per_item(out_dir: Path, final: dict[str, Any]) -> str | None:
    """``per_item.csv`` from the final evaluation (atomically); its name for result.json, or None
    when the evaluation kept no per-item scores (a checkpoint of an earlier version)."""
    from strabench.metrics.per_item import PerItemTable

    table = final.get("per_item")
    if not isinstance(table, dict):
        return None
    rows = PerItemTable(dict(table["columns"]), tuple(table["metrics"]))
    atomic_write_text(out_dir / PER_ITEM_CSV, rows.to_csv())
    return PER_ITEM_CSV


def _result(
    trainer: Trainer, chash: str, out_dir: Path, final: dict[str, Any], untrained: dict[str, Any] | None,
    train_time: float, last_record: dict[str, Any] | None,
) -> dict[str, Any]:
    from strabench.measure.params import count_params

    cfg = trainer.cfg
    return {
        "status": "finished",
        "model": cfg.model,
        "task": cfg.task,
        "data": cfg.data,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "config_hash": chash,
        "metrics": final["metrics"],
        "metrics_untrained": (untrained or {}).get("metrics", {}),
        "metrics_ci95": final.get("intervals", {}),
        "test_size": final.get("test_size", {}),
        "ci_method": CI_METHOD,
        "details": final.get("extra", {}),
        "details_untrained": (untrained or {}).get("extra", {}),
        "epochs": cfg.epochs,
        "final_loss": (last_record or {}).get("loss"),
        "train_time_s": train_time,
        "eval_time_s": final.get("time_s"),
        "params": count_params(trainer.model),
        "input_size": list(cfg.input_size),
        "num_classes": trainer.data.num_classes,
        "train_images": len(trainer.data.train),
        "device": str(trainer.device),
        "world_size": trainer.ctx.world_size,
        "amp": str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp_dtype else "off",
        "out_dir": _shown_path(out_dir),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _shown_path(path: Path) -> str:
    """``path`` as result.json records it: relative to the working directory when inside it (a
    results folder made with an absolute ``--out`` names no home directory), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

"""The training configuration: one frozen dataclass, resolved against the recipes, hashed.

``TrainConfig`` is what a user (CLI flags, a suite's TOML table) asks for; every field but
``model`` may be None, meaning "the recipe's value". ``resolve`` fills them from
``strabench.train.recipes`` (the paper's appendix B, scaled by a profile) and validates them,
so that a resolved config *is* the experiment: ``config_hash`` of it names the run directory,
is stored in every checkpoint, and a resume under a different config is refused.

Why the hash covers nearly everything (device and AMP mode included): they change the numbers.
Only ``num_workers`` is left out, because it changes speed, not results (each epoch's random
stream is derived from ``(seed, epoch)``, whatever the worker count).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from strabench.errors import CheckpointError, ConfigError
from strabench.train import recipes

__all__ = [
    "HASH_EXCLUDED",
    "TrainConfig",
    "apply_overrides",
    "config_from_mapping",
    "config_from_toml",
    "config_hash",
    "config_to_dict",
    "resolve",
    "to_toml",
]

#: Fields that do not change a run's results and so stay out of ``config_hash``.
HASH_EXCLUDED = frozenset({"num_workers"})
OPTIMIZERS = ("adam", "sgd")
AMP_MODES = ("auto", "off", "bf16", "fp16")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_NESTING = 32  # arrays/tables inside a model_overrides / data_sizes value


@dataclass(frozen=True)
class TrainConfig:
    """One training run. None = "take the recipe/profile default" (see ``resolve``).

    Learning-rate schedule: the rate is ``lr * warm-up * decay`` where warm-up rises linearly
    from 0.1 to 1 over ``warmup_epochs`` (per step) and decay is ``lr_gamma ** (number of
    milestones passed)`` if ``milestones`` is non-empty, else ``lr_gamma ** ((epoch -
    lr_decay_start) // lr_step)`` for epochs past ``lr_decay_start`` (``lr_step=0``: constant).
    ``batch_size`` is the global batch (split over DDP ranks). ``model_overrides`` go to
    ``create_model`` as keywords, its ``replace`` table included (``{"layer4.*.conv2" = "stra"}``:
    blocks put into the model, ``strabench.models.replace``; an empty one is dropped, so it
    changes no hash); ``data_sizes`` go to the synthetic generators (ignored for real data).
    """

    model: str
    task: str | None = None
    data: str | None = None
    profile: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    lr_step: int | None = None
    lr_gamma: float | None = None
    lr_decay_start: int | None = None
    milestones: tuple[int, ...] | None = None
    warmup_epochs: float | None = None
    diversity_weight: float | None = None
    input_size: tuple[int, int] | None = None
    seed: int | None = None
    data_seed: int | None = None
    device: str | None = None
    amp: str | None = None
    channels_last: bool | None = None
    num_workers: int | str | None = None
    freeze_epochs: int | None = None
    pretrained: str | None = None
    model_overrides: dict[str, Any] | None = None
    data_sizes: dict[str, Any] | None = None
    eval_every: int | None = None
    eval_batch_size: int | None = None


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


# --- checks -------------------------------------------------------------------------------------


#: The largest seed every random generator a run seeds accepts: ``torch.manual_seed`` takes at
#: most 2**64 - 1 (numpy's SeedSequence and Python's ``random`` take any non-negative int).
SEED_MAX = 2**64 - 1
#: Counts (epochs, batch sizes, steps) beyond this are typos, and overflow C integers
#: (torch and numpy index with int64) before they could ever run.
COUNT_MAX = 2**31 - 1


def _int(name: str, value: Any, minimum: int, maximum: int = COUNT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        shown = value if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        raise ConfigError(f"{name} must be <= {maximum}, got {shown}")
    return value


def _float(name: str, value: Any, *, minimum: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum}"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value}")
    return value


def _choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    return value


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"input_size must be (height, width), got {value!r}")
    return (_int("input_size height", value[0], 8), _int("input_size width", value[1], 8))


def _milestones(value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise ConfigError(f"milestones must be a list of epochs, got {value!r}")
    out = tuple(_int("milestone", v, 1) for v in value)
    if list(out) != sorted(set(out)):
        raise ConfigError(f"milestones must be strictly increasing, got {list(out)}")
    return out


def key_path(prefix: str, key: Any) -> str:
    """``prefix.key`` with ``key`` quoted (repr) unless it is a bare TOML key, so that a key
    holding a newline or a dot cannot break or fake an error message."""
    text = key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else repr(key)
    return f"{prefix}.{text}" if prefix else text


def _show(value: Any) -> str:
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return f"a {type(value).__name__} ({value.isoformat()})"
    return repr(value)


def check_plain_value(name: str, value: Any, depth: int = 0) -> None:
    """Raise ConfigError unless ``value`` is what TOML (config.toml) and the config hash (JSON)
    both hold exactly: a boolean, integer, finite number or string, or arrays/tables of them.

    Without this a date or an inf in a suite's ``data_sizes`` / ``overrides`` only failed when
    the run hashed or used it, i.e. after the suite had started. ``name`` is the key path the
    message names.
    """
    if depth > _MAX_NESTING:
        raise ConfigError(f"{name} is nested too deeply (more than {_MAX_NESTING} levels)")
    if isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain_value(f"{name}[{index}]", item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{name} keys must be strings, got {key!r}")
            check_plain_value(key_path(name, key), item, depth + 1)
        return
    raise ConfigError(f"{name} must be a number, string, boolean or an array of them, got {_show(value)}")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{name} must be a table of name = value, got {value!r}")
    for key, item in value.items():
        check_plain_value(key_path(name, key), item)
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in sorted(value.items())}


def _data_spec(spec: str, task: str) -> tuple[str, bool]:
    """Canonical spec string (absolute path) and whether the dataset is synthetic."""
    from strabench.data.tasks import parse_data_spec
    from strabench.errors import DataError

    parsed = parse_data_spec(spec)
    if parsed.task != task:
        raise DataError(f"dataset {parsed} is for task {parsed.task!r}, not {task!r}")
    if parsed.path is None:
        return parsed.name, True
    path = parsed.path.resolve()
    if not path.exists():
        raise DataError(f"{path}: data path for {parsed.name} does not exist")
    return f"{parsed.name}:{path}", False


# --- resolve ------------------------------------------------------------------------------------


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill every None from the recipe of the config's task and profile, and validate.

    Idempotent: resolving a resolved config returns an equal one. Raises ``ConfigError`` (bad
    values, unknown profile), ``UnknownModelError``, ``DataError`` (unknown dataset, missing
    data path) and ``CheckpointError`` (missing pretrained file), naming the offending value.
    """
    from strabench.registry import model_info

    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"resolve() takes a TrainConfig, got {type(cfg).__name__}")
    info = model_info(cfg.model)
    task = cfg.task or info.default_task
    recipes.check_task(task)
    if task not in info.tasks:
        raise ConfigError(f"model {cfg.model!r} supports task(s) {', '.join(info.tasks)}, not {task!r}")
    profile = recipes.check_profile(cfg.profile or "quick")
    rec = recipes.recipe(task, profile)

    def pick(name: str) -> Any:
        value = getattr(cfg, name)
        return rec[name] if value is None else value

    data, synthetic = _data_spec(cfg.data or recipes.DEFAULT_DATA[task], task)
    data_sizes = _mapping("data_sizes", cfg.data_sizes or {})
    if synthetic:
        from strabench.data.tasks import check_synthetic_sizes

        data_sizes = dict(sorted({**rec["data_sizes"], **data_sizes}.items()))  # the user's sizes win
        check_synthetic_sizes(data, data_sizes)  # refused now, not when a run generates the data
    elif data_sizes:
        raise ConfigError(f"data_sizes {data_sizes} only apply to synthetic datasets, not {data}")

    pretrained = cfg.pretrained
    if pretrained is not None:
        path = Path(str(pretrained)).expanduser().resolve()
        if not path.is_file():
            raise CheckpointError(f"pretrained weights file not found: {path}")
        pretrained = str(path)
    freeze_default = rec["freeze_epochs_pretrained"] if pretrained is not None else 0

    batch_size = _int("batch_size", pick("batch_size"), 1)
    eval_batch = cfg.eval_batch_size if cfg.eval_batch_size is not None else max(batch_size, 64)
    num_workers = cfg.num_workers if cfg.num_workers is not None else "auto"
    if num_workers != "auto":
        num_workers = _int("num_workers", num_workers, 0)
    device = cfg.device or "auto"
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")
    model_overrides = _mapping("model_overrides", cfg.model_overrides or {})
    if "num_classes" in model_overrides:
        raise ConfigError("model_overrides may not set num_classes: it comes from the dataset")
    blocks = model_overrides.pop("replace", None)
    if blocks is not None and blocks != {}:
        if not isinstance(blocks, Mapping) or not all(isinstance(v, str) and v for v in blocks.values()):
            raise ConfigError(f"model_overrides replace must be a table of module pattern = block (e.g. {{\"layer4.*.conv2\" = \"stra\"}}), got {blocks!r}")
        model_overrides["replace"] = dict(blocks)

    resolved = TrainConfig(
        model=cfg.model,
        task=task,
        data=data,
        profile=profile,
        epochs=_int("epochs", pick("epochs"), 1),
        batch_size=batch_size,
        lr=_float("lr", pick("lr"), positive=True),
        optimizer=_choice("optimizer", pick("optimizer"), OPTIMIZERS),
        momentum=_float("momentum", pick("momentum")),
        weight_decay=_float("weight_decay", pick("weight_decay")),
        lr_step=_int("lr_step", pick("lr_step"), 0),
        lr_gamma=_float("lr_gamma", pick("lr_gamma"), positive=True),
        lr_decay_start=_int("lr_decay_start", pick("lr_decay_start"), 0),
        milestones=_milestones(pick("milestones")),
        warmup_epochs=_float("warmup_epochs", pick("warmup_epochs")),
        diversity_weight=_float("diversity_weight", pick("diversity_weight")),
        input_size=_size(pick("input_size")),
        seed=_int("seed", cfg.seed if cfg.seed is not None else 0, 0, SEED_MAX),
        data_seed=_int("data_seed", cfg.data_seed if cfg.data_seed is not None else 0, 0, SEED_MAX),
        device=device,
        amp=_choice("amp mode", cfg.amp or "auto", AMP_MODES),
        channels_last=bool(cfg.channels_last) if cfg.channels_last is not None else False,
        num_workers=num_workers,
        freeze_epochs=_int("freeze_epochs", cfg.freeze_epochs if cfg.freeze_epochs is not None else freeze_default, 0),
        pretrained=pretrained,
        model_overrides=model_overrides,
        data_sizes=data_sizes if synthetic else {},
        eval_every=_int("eval_every", cfg.eval_every if cfg.eval_every is not None else rec.get("eval_every", 0), 0),
        eval_batch_size=_int("eval_batch_size", eval_batch, 1),
    )
    if resolved.momentum >= 1.0:
        raise ConfigError(f"momentum must be < 1, got {resolved.momentum}")
    return resolved


def is_resolved(cfg: TrainConfig) -> bool:
    return all(getattr(cfg, name) is not None for name in FIELD_NAMES if name != "pretrained")


# --- (de)serialisation --------------------------------------------------------------------------


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain JSON-able dict (tuples as lists, None kept); the checkpoint stores this."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return {name: plain(getattr(cfg, name)) for name in FIELD_NAMES}


def config_hash(cfg: TrainConfig) -> str:
    """12 hex chars of the SHA-256 of the resolved config's canonical JSON (minus HASH_EXCLUDED)."""
    resolved = cfg if is_resolved(cfg) else resolve(cfg)
    payload = {k: v for k, v in config_to_dict(resolved).items() if k not in HASH_EXCLUDED}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def config_from_mapping(values: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
    """A TrainConfig from a mapping (a TOML table, a checkpoint's stored config); unknown keys fail."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], FIELD_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown training option {unknown[0]!r} in {source}{hint}")
    if "model" not in values:
        raise ConfigError(f"{source} has no 'model'")
    kwargs = dict(values)
    for name in ("input_size", "milestones"):
        if isinstance(kwargs.get(name), list):
            kwargs[name] = tuple(kwargs[name])
    return TrainConfig(**kwargs)


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is
    (``json.dumps`` would write astral characters as surrogate pairs, which TOML refuses)."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in sorted(value.items())) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")


def to_toml(cfg: TrainConfig) -> str:
    """The config as TOML (``config.toml`` of a run); None fields are omitted (TOML has no null)."""
    lines = ["# strabench training config (resolved)", f"# config_hash = {config_hash(cfg)}"]
    for name, value in config_to_dict(cfg).items():
        if value is not None:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def config_from_toml(text: str, *, source: str = "config.toml") -> TrainConfig:
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML (arrays or tables nested too deeply)") from None
    return config_from_mapping(values, source=source)


def apply_overrides(cfg: TrainConfig, assignments: Iterable[str]) -> TrainConfig:
    """Apply ``key=value`` strings (``--set``); values are TOML (``milestones=[8, 12]``), else text."""
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in FIELD_NAMES or key == "model":
            config_from_mapping({"model": cfg.model, key: None}, source="--set")  # raises with a hint
            raise ConfigError(f"--set cannot change {key!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        except RecursionError:
            raise ConfigError(f"--set {key}: value nested too deeply") from None
        changes[key] = tuple(value) if isinstance(value, list) and key in ("input_size", "milestones") else value
    return dataclasses.replace(cfg, **changes)

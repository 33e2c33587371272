"""Saved tensors into a model: the one loader behind ``pretrained=``, checkpoints' weights and ``eval``.

``load_state(path, model, strict=...)`` reads a weights file and copies it into ``model``, with
the same guarantees wherever weights come from:

* **Safe reading.** Files are read with ``torch.load(weights_only=True)`` only, so a crafted
  file cannot run code; a file with a ``.sha256`` sidecar (a strabench checkpoint) is checked
  against it first. Any failure is one line: ``CorruptCheckpointError`` for a damaged, foreign
  or unsafe file, ``CheckpointError`` otherwise.
* **Names and shapes checked.** ``strict=True`` (a checkpoint of this very model: ``eval``,
  ``export``, ``viz``) refuses any missing, unexpected or shape-mismatched tensor, listing a few
  of each. ``strict=False`` (initialising from another model's weights, e.g. an ImageNet
  ResNet-50 under a variant whose blocks differ) copies every tensor that fits by name and
  shape and reports the rest, never silently; a file of which nothing fits is refused.

A weights file is a plain ``state_dict``, one wrapped as ``{"model": ...}`` or
``{"state_dict": ...}``, or a strabench checkpoint (its ``state["model"]`` entry). The reading
primitives (``safe_load``, the sidecar) live here, below ``strabench.train.checkpoint``, which
writes checkpoints and resumes from them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import CheckpointError, clip
from strabench.io import sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "FORMAT_KEY", "CorruptCheckpointError", "LoadReport", "error_line", "load_state", "read_sidecar", "read_state",
    "safe_load", "sidecar_path", "verify_sidecar",
]

log = logging.getLogger(__name__)

#: The marker key of a strabench checkpoint's top-level dict.
FORMAT_KEY = "strabench_checkpoint"
_MAX_LISTED_KEYS = 5


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that is damaged, truncated, foreign or unsafe: try an older one.

    Distinguished from other ``CheckpointError``s (e.g. a config-hash mismatch) because only
    this kind makes ``strabench.train.checkpoint.load_latest_good`` fall back to the previous
    checkpoint.
    """


# --- reading a file ---------------------------------------------------------------------------


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The checksum file of a checkpoint: ``<path>.sha256``."""
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar record of checkpoint ``path``; None if there is no sidecar."""
    side = sidecar_path(path)
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CorruptCheckpointError(f"checksum file {side} is unreadable ({err})") from err
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("sha256"), str)
        or not isinstance(record.get("size"), int)
    ):
        raise CorruptCheckpointError(f"checksum file {side} is malformed: {clip(repr(record), 120)}")
    return record


def verify_sidecar(path: Path) -> bool:
    """Check ``path`` against its sidecar; True if verified, False if there is no sidecar.

    Raises ``CorruptCheckpointError`` on a mismatch. The size is compared first: a truncated
    file is caught without hashing it.
    """
    record = read_sidecar(path)
    if record is None:
        return False
    size = path.stat().st_size
    if size != record["size"] or sha256_file(path) != record["sha256"]:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupt (sha256 mismatch; {size} bytes, "
            f"{sidecar_path(path).name} expects {record['size']})"
        )
    return True


def error_line(err: BaseException, limit: int = 160) -> str:
    """``TypeName: first line of the message``, clipped: an exception as one line of a message."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {clip(line, limit)}"


def safe_load(path: Path, map_location: Any = "cpu", *, what: str = "strabench checkpoint") -> Any:
    """``torch.load(weights_only=True)``; every failure becomes a one-line ``CorruptCheckpointError``.

    Unpickling untrusted bytes fails in many ways (UnpicklingError for forbidden globals,
    RuntimeError for a broken zip, EOFError, ...); all mean "not a file we can use".
    """
    import torch

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - wrapped and re-raised, never swallowed
        raise CorruptCheckpointError(f"{path} is not a valid {what} or unsafe to load ({error_line(err)})") from err


def read_state(path: str | os.PathLike[str]) -> dict[str, "torch.Tensor"]:
    """The tensors of a weights file (a state_dict, ``{"model"|"state_dict": ...}`` or a strabench
    checkpoint), read safely: its sidecar checked when it has one, ``weights_only`` always."""
    import torch

    target = Path(path)
    if not target.is_file():
        raise CheckpointError(f"weights file {target} does not exist")
    verify_sidecar(target)
    obj = safe_load(target, what="strabench checkpoint or state_dict")
    if isinstance(obj, dict) and FORMAT_KEY in obj:
        state = obj.get("state")
        if not isinstance(state, dict) or "model" not in state:
            raise CheckpointError(f"checkpoint {target} has no 'model' entry to load weights from")
        obj = state["model"]
    elif isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{target} does not hold a state_dict (a mapping of parameter names to tensors)")
    return dict(obj)


# --- into a model ------------------------------------------------------------------------------


def _listed(keys: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f", ... ({more} more)" if more > 0 else "")


@dataclass(frozen=True)
class LoadReport:
    """What ``load_state`` copied and what it did not (missing and mismatched in the model's
    order, unexpected in the file's)."""

    path: str
    loaded: int
    missing: tuple[str, ...]  # the model's tensors the file lacks
    unexpected: tuple[str, ...]  # the file's tensors the model lacks
    mismatched: tuple[str, ...]  # in both, with other shapes: not loaded
    prefix_removed: bool = False  # every name of the file began with "module." (DataParallel)

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.path}"]
        if self.prefix_removed:
            parts.append("names read without their 'module.' prefix")
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)):
            if keys:
                parts.append(f"{label} {len(keys)}: {_listed(keys)}")
        return "; ".join(parts)


def load_state(
    path: str | os.PathLike[str],
    model: "nn.Module",
    *,
    strict: bool = True,
    state: Mapping[str, "torch.Tensor"] | None = None,
    name: str | None = None,
) -> LoadReport:
    """Copy the tensors of the weights file ``path`` into ``model`` (see the module docstring).

    ``state``: the file's tensors when the caller has read them already (``eval`` reads a
    checkpoint's training config first), so the file is not read twice; ``path`` then names it
    in messages. ``name`` names the model in messages (default: its class).
    """
    weights = dict(state) if state is not None else read_state(path)
    label = name or type(model).__name__
    own = model.state_dict()
    prefix_removed = False
    if not strict and weights and all(k.startswith("module.") for k in weights) and not any(k.startswith("module.") for k in own):
        weights, prefix_removed = {k.removeprefix("module."): v for k, v in weights.items()}, True
    missing = tuple(k for k in own if k not in weights)
    unexpected = tuple(k for k in weights if k not in own)
    mismatched = tuple(k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape))
    if strict and (missing or unexpected or mismatched):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
        if mismatched:
            shapes = [f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]
            parts.append(f"{len(mismatched)} shape mismatches ({_listed(shapes)})")
        hint = "checkpoint of another model?"
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = "keys start with 'module.': saved from DataParallel?"
        raise CheckpointError(f"{path} does not fit {label}: {'; '.join(parts)} ({hint})")
    fitting = {k: v for k, v in weights.items() if k in own and k not in mismatched}
    if not fitting and own:
        raise CheckpointError(f"{path}: no tensor matches {label} by name and shape (weights of another model?)")
    model.load_state_dict(fitting, strict=strict)
    report = LoadReport(str(path), len(fitting), missing, unexpected, mismatched, prefix_removed)
    if missing or unexpected or mismatched or prefix_removed:
        log.warning("loaded %s into %s non-strictly: %s", path, label, report.summary())
    return report

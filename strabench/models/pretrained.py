"""Initialise a model from a local torchvision-style state_dict, reporting what did not match.

Names follow torchvision, so an ImageNet ResNet-50 file fills everything but the blocks a
variant replaced and the new head. Nothing is silent: missing, unexpected and shape-mismatched
keys are returned and logged. Files are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from strabench.errors import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    path: str
    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[str, ...]

    def summary(self) -> str:
        def few(keys: tuple[str, ...]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        parts = [f"loaded {self.loaded} tensors from {self.path}"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)):
            if keys:
                parts.append(f"{label} {len(keys)}: {few(keys)}")
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file (a plain one, or our checkpoint's ``model`` entry), safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to safe-load is the file's problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load weights from {path}: not a valid or safe state_dict ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy every tensor whose name and shape match; report the rest (never silently)."""
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = tuple(sorted(k for k in state if k in own and own[k].shape != state[k].shape))
    if not usable:
        raise CheckpointError(f"{path}: no tensor matches {type(model).__name__} by name and shape (weights of another model?)")
    result = model.load_state_dict(usable, strict=False)
    report = LoadReport(
        path=str(path),
        loaded=len(usable),
        missing=tuple(sorted(k for k in result.missing_keys if k not in mismatched)),
        unexpected=tuple(sorted(k for k in state if k not in own)),
        mismatched=mismatched,
    )
    log.warning("pretrained: %s", report.summary())
    model.pretrained_report = report  # type: ignore[attr-defined]
    return report

"""What the registry knows about a model before it is built, and the table registration fills.

A leaf below ``strabench.registry`` and the modules that describe models (``zoo`` registers
into it, ``sources`` describes references with ``ModelInfo``), so neither imports the registry.
``strabench.registry`` re-exports ``ModelInfo`` and ``register_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from strabench.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from strabench.paper import PaperRef


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before it is built."""

    name: str
    builder: Callable[..., "nn.Module"]
    tasks: tuple[str, ...]
    default_input: tuple[int, int | None, int | None]  # (channels, height, width); H, W None: none known
    block: str  # what replaces / augments the backbone's blocks, e.g. "StRA (local+mode)"
    family: str  # "resnet50-reid", "mobilenetv2-reid", "resnet50-face", "resnet-fer"
    description: str = ""
    paper: "PaperRef | None" = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    source: str = "registry"  # or "torchvision", "timm", "callable" (see strabench.models.sources)
    feature_builder: Callable[..., "nn.Module"] | None = None  # non-registry: the feature extractor

    @property
    def default_task(self) -> str:
        return self.tasks[0]

    def input_size(self, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """``size`` if given, else the model's default (H, W); a model without one needs ``--input``."""
        if size is not None:
            return (int(size[0]), int(size[1]))
        _, h, w = self.default_input
        if h is None or w is None:
            raise ConfigError(f"model {self.name!r} has no default input size; pass --input HEIGHTxWIDTH (e.g. 224x224)")
        return (h, w)


#: Registered models by name, in registration order (filled by ``register_model``).
REGISTERED: dict[str, ModelInfo] = {}


def register_model(
    *,
    tasks: tuple[str, ...],
    default_input: tuple[int, int, int],
    block: str,
    family: str,
    paper: "PaperRef | None" = None,
    name: str | None = None,
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., "nn.Module"]], Callable[..., "nn.Module"]]:
    """Decorator that registers a model builder under its function name (or ``name``)."""

    def decorator(builder: Callable[..., "nn.Module"]) -> Callable[..., "nn.Module"]:
        key = name or builder.__name__
        if key in REGISTERED:
            raise ValueError(f"model {key!r} is already registered (by {REGISTERED[key].builder.__module__})")
        doc = (builder.__doc__ or "").strip().splitlines()
        REGISTERED[key] = ModelInfo(
            name=key,
            builder=builder,
            tasks=tuple(tasks),
            default_input=tuple(default_input),  # type: ignore[arg-type]
            block=block,
            family=family,
            description=doc[0] if doc else "",
            paper=paper,
            tags=tuple(tags),
        )
        return builder

    return decorator

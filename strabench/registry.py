"""The component registry: every model strabench knows is registered here by name.

Three verbs, as in timm: ``@register_model`` on a builder, ``create_model(name, ...)`` and
``list_models(pattern)``. Each entry carries metadata (tasks, default input, the block it uses,
the paper's reference numbers) so that commands can describe a model without building it.
The zoo (``strabench.models.zoo``) is imported on first use, not at ``import strabench``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from strabench.errors import UnknownModelError

if TYPE_CHECKING:
    from torch import nn

    from strabench.paper import PaperRef


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before it is built."""

    name: str
    builder: Callable[..., "nn.Module"]
    tasks: tuple[str, ...]
    default_input: tuple[int, int, int]  # (channels, height, width)
    block: str  # what replaces / augments the backbone's blocks, e.g. "StRA (local+mode)"
    family: str  # "resnet50-reid", "mobilenetv2-reid", "resnet50-face", "resnet-fer"
    description: str = ""
    paper: "PaperRef | None" = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def default_task(self) -> str:
        return self.tasks[0]


_REGISTRY: dict[str, ModelInfo] = {}
_ZOO_LOADED = False


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
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered (by {_REGISTRY[key].builder.__module__})")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelInfo(
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


def _ensure_zoo() -> None:
    global _ZOO_LOADED
    if not _ZOO_LOADED:
        _ZOO_LOADED = True
        import strabench.models.zoo  # noqa: F401  (registers the models)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell wildcard (``'*stra*'``), in registration order."""
    _ensure_zoo()
    return [name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)]


def model_info(name: str) -> ModelInfo:
    """The metadata of one model; unknown names raise with the closest suggestions."""
    _ensure_zoo()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `strabench list` to see them"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    pretrained: str | None = None,
    **overrides: Any,
) -> "nn.Module":
    """Build a registered model with random initialisation (or local ``pretrained`` weights).

    ``task`` must be one the model supports (default: its first); ``num_classes`` sizes the
    training-only classifier; ``overrides`` go to the builder (e.g. ``input_size=(128, 64)``).
    """
    from strabench.errors import ConfigError

    info = model_info(name)
    task = task or info.default_task
    if task not in info.tasks:
        raise ConfigError(f"model {name!r} supports task(s) {', '.join(info.tasks)}, not {task!r}")
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = info.builder(**kwargs)
    except TypeError as exc:  # an override the builder does not take
        raise ConfigError(f"model {name!r}: {exc}") from None
    if pretrained is not None:
        from strabench.models.pretrained import load_pretrained

        load_pretrained(model, pretrained)
    return model

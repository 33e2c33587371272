"""The component registry: every model strabench knows is registered here by name.

Three verbs, as in timm: ``@register_model`` on a builder, ``create_model(name, ...)`` and
``list_models(pattern)``. Each entry carries metadata (tasks, default input, the block it uses,
the paper's reference numbers) so that commands can describe a model without building it.
The zoo (``strabench.models.zoo``) is imported on first use, not at ``import strabench``.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import TYPE_CHECKING, Any, Mapping

from strabench.errors import ConfigError, UnknownModelError
from strabench.models.info import REGISTERED as _REGISTRY
from strabench.models.info import ModelInfo, register_model
from strabench.models.sources import resolve_reference

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]


_ZOO_LOADED = False


def _ensure_zoo() -> None:
    global _ZOO_LOADED
    if not _ZOO_LOADED:
        _ZOO_LOADED = True
        import strabench.models.zoo  # noqa: F401  (registers the models; on first use, not at import)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell wildcard (``'*stra*'``), in registration order."""
    _ensure_zoo()
    return [name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)]


def model_info(name: str) -> ModelInfo:
    """The metadata of one model; unknown names raise with the closest suggestions.

    ``name`` is a registered name or a reference, ``torchvision:NAME``, ``timm:NAME`` or
    ``package.module:callable`` (see ``strabench.models.sources``).
    """
    if not isinstance(name, str):
        raise UnknownModelError(f"a model is named by a string, got {type(name).__name__}")
    if ":" in name:
        return resolve_reference(name)
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
    replace: "Mapping[str, str] | None" = None,
    **overrides: Any,
) -> "nn.Module":
    """Build a model with random initialisation (or local ``pretrained`` weights).

    ``name``: a registered name or a reference (``torchvision:resnet18``, ``timm:NAME``,
    ``package.module:callable``). ``task`` must be one the model supports (default: its first);
    ``num_classes`` sizes the training-only classifier; ``overrides`` go to the builder (e.g.
    ``input_size=(128, 64)``). ``replace`` swaps modules for blocks, ``{"layer4.*.conv2": "stra"}``
    (see ``strabench.models.replace``); a replacement that does not fit is refused before anything runs.

    A non-registry model is returned as its source builds it, unless ``num_classes`` is given
    (training, evaluation): then its feature extractor comes wrapped with our classifier
    (``strabench.models.external.FeatureModel``).
    """
    info = model_info(name)
    task = task or info.default_task
    if task not in info.tasks:
        raise ConfigError(f"model {name!r} supports task(s) {', '.join(info.tasks)}, not {task!r}")
    from strabench.models.meta_init import skipping_meta_init  # torch: not at import (CLI start-up)

    with skipping_meta_init():  # on the meta device: shapes only, no initialiser runs
        return _create(name, info, num_classes=num_classes, pretrained=pretrained, replace=replace, overrides=overrides)


def _create(name: str, info: ModelInfo, *, num_classes: int | None, pretrained: str | None,
            replace: "Mapping[str, str] | None", overrides: dict[str, Any]) -> "nn.Module":
    kwargs = dict(overrides)
    if info.source != "registry":
        return _create_external(info, num_classes=num_classes, pretrained=pretrained, replace=replace, **kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = info.builder(**kwargs)
    except TypeError as exc:  # an override the builder does not take
        raise ConfigError(f"model {name!r}: {exc}") from None
    except (ValueError, OverflowError, RuntimeError) as exc:
        if not overrides:  # the model's own defaults fail: a bug, keep its traceback
            raise
        # a block refusing a setting (groups=7 for 64 channels, a negative width, 10**30)
        raise ConfigError(f"model {name!r} rejects the settings {overrides}: {' '.join(str(exc).split())}") from None
    if replace:
        from strabench.models.replace import apply_replacements  # torch: not at import (CLI start-up)

        apply_replacements(model, replace, (info.default_input[0], *info.input_size(kwargs.get("input_size"))))
    if pretrained is not None:
        _load_pretrained(model, pretrained)
    return model


#: The probe input of a model that declares none (no ``default_input``, no ``input_size``).
FALLBACK_PROBE = (64, 64)


def _probe_size(info: ModelInfo, size: Any, model: Any) -> tuple[int, int]:
    """The (H, W) to run a non-registry model at once (sizing its features, checking ``replace``):
    the run's input (``input_size``), else the input its callable declares (``default_input``),
    else the built module's own ``default_input`` (C, H, W), else ``FALLBACK_PROBE``."""
    if size is not None or info.default_input[1] is not None:
        return info.input_size(size)
    declared = getattr(model, "default_input", None)
    if isinstance(declared, (tuple, list)) and len(declared) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in declared[1:]):
        return (int(declared[1]), int(declared[2]))
    return FALLBACK_PROBE


def _create_external(
    info: ModelInfo, *, num_classes: int | None, pretrained: str | None, replace: "Mapping[str, str] | None", **kwargs: Any
) -> "nn.Module":
    size = kwargs.pop("input_size", None)
    builder = info.builder if num_classes is None else info.feature_builder or info.builder
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {info.name!r}: {exc}") from None
    except (ValueError, OverflowError, RuntimeError) as exc:
        if not kwargs:
            raise
        raise ConfigError(f"model {info.name!r} rejects the settings {kwargs}: {' '.join(str(exc).split())}") from None
    shape = None
    if replace or num_classes is not None:
        shape = (info.default_input[0], *_probe_size(info, size, model))
    if replace:
        from strabench.models.replace import apply_replacements  # torch: not at import (CLI start-up)

        apply_replacements(model, replace, shape)  # type: ignore[arg-type]
    if num_classes is not None:
        from strabench.models.external import FeatureModel  # torch: not at import (CLI start-up)

        model = FeatureModel(model, name=info.name, num_classes=num_classes, probe_size=shape[1:], in_chans=shape[0])  # type: ignore[index]
    if pretrained is not None:
        _load_pretrained(model, pretrained)
    return model


def _load_pretrained(model: "nn.Module", path: str) -> None:
    """Every tensor of ``path`` that fits by name and shape; the rest reported, never silently
    (``model.pretrained_report``, and a logged warning)."""
    from strabench.models.weights import load_state  # torch: not at import (CLI start-up)

    model.pretrained_report = load_state(path, model, strict=False)  # type: ignore[attr-defined]

"""Models from elsewhere, named by reference: ``torchvision:NAME``, ``timm:NAME``, ``package.module:callable``.

A reference resolves to a ``ModelInfo`` like a registered name, so every command and API that
takes a model name takes one. Models are built with random weights: nothing is downloaded.

- ``torchvision:resnet18``: ``torchvision.models.get_model(NAME, weights=None)``; default input =
  the crop size of the model's first weights entry (metadata only), e.g. 224x224.
- ``timm:resnet18``: ``timm.create_model(NAME, pretrained=False)`` (``pip install 'strabench[timm]'``);
  default input = the model's pretrained config ``input_size``.
- ``mypkg.mymodule:build``: a callable importable from the working directory or ``PYTHONPATH``,
  called with the overrides, returning an ``nn.Module``; default input = its ``default_input``
  attribute ``(C, H, W)`` if it has one, else ``--input`` is required. Naming one runs that code,
  as importing it would.

Training contract (``train``, ``eval``, suites): a non-registry model is used as a *feature
extractor*; strabench adds a linear classifier on its features for training (see
``strabench.models.external.FeatureModel``). ``torchvision:`` models lose their last ``nn.Linear``
(replaced by identity, the usual fine-tuning recipe), ``timm:`` models are built with
``num_classes=0`` (pooled features), and a user callable must return the feature extractor itself:
output (B, D), (B, D, H, W) (averaged over H, W) or (B, N, D) tokens (averaged over N).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Callable

from strabench.errors import ConfigError, UnknownModelError
from strabench.models.imports import import_from_cwd
from strabench.models.info import ModelInfo
from strabench.usercode import calling

if TYPE_CHECKING:
    from torch import nn

#: Tasks a non-registry model can be trained for: the 3-channel ones (FER data is grey).
EXTERNAL_TASKS = ("reid", "face")


def _unknown(ref: str, name: str, known: list[str], where: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {where}"
    return UnknownModelError(f"unknown model {ref!r}{hint}")


def _info(
    ref: str, builder: Callable[..., "nn.Module"], default_input: tuple, family: str, description: str,
    features: Callable[..., "nn.Module"],
) -> ModelInfo:
    return ModelInfo(
        name=ref, builder=builder, tasks=EXTERNAL_TASKS, default_input=default_input, block="(external)",
        family=family, description=description, source=family, feature_builder=features,
    )


def _without_last_linear(model: "nn.Module") -> "nn.Module":
    """The torchvision fine-tuning recipe: the last ``nn.Linear`` (the ImageNet head) becomes identity."""
    from torch import nn

    last = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        return model
    parent_name, _, child = last[-1].rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
    return model


def _torchvision(ref: str, name: str) -> ModelInfo:
    from torchvision import models

    known = models.list_models()
    if name not in known:
        raise _unknown(ref, name, [f"torchvision:{n}" for n in known] + known, "torchvision.models.list_models()")
    size: tuple = (None, None)
    try:
        weights = list(models.get_model_weights(name))
        crop = weights[0].transforms.keywords.get("crop_size") if weights else None
        if crop is not None:
            size = (int(crop), int(crop)) if isinstance(crop, int) else tuple(crop)
    except (ValueError, AttributeError, TypeError):  # no weights enum: --input is required
        pass

    def build(**overrides: Any) -> "nn.Module":
        return models.get_model(name, weights=None, **overrides)

    def features(**overrides: Any) -> "nn.Module":
        return _without_last_linear(build(**overrides))

    return _info(ref, build, (3, *size), "torchvision", f"torchvision.models.{name} (random init)", features)


def _timm(ref: str, name: str) -> ModelInfo:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"{ref}: timm is not installed; install it with: pip install 'strabench[timm]'") from None
    known = timm.list_models()
    if name not in known:
        raise _unknown(ref, name, known, "timm.list_models()")
    cfg = timm.models.get_pretrained_cfg(name)
    size = tuple(cfg.input_size) if cfg is not None and cfg.input_size else (3, None, None)

    def build(**overrides: Any) -> "nn.Module":
        return timm.create_model(name, pretrained=False, **overrides)

    def features(**overrides: Any) -> "nn.Module":
        return build(**{**overrides, "num_classes": 0})

    return _info(ref, build, size, "timm", f"timm {name} (random init)", features)


def _declared_input(target: Any, ref: str) -> tuple:
    """The callable's ``default_input`` (C, H, W), checked: a malformed one is refused here, not
    as a shape error deep in a probe."""
    default = getattr(target, "default_input", None)
    if default is None:
        return (3, None, None)
    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31

    ok = isinstance(default, (tuple, list)) and len(default) == 3 and positive(default[0]) and (
        all(positive(v) for v in default[1:]) or all(v is None for v in default[1:]))
    if not ok:
        raise ConfigError(f"{ref}: default_input must be (channels, height, width) of positive integers, got {default!r}")
    return tuple(default)


def _callable(ref: str, module_name: str, attr: str) -> ModelInfo:
    module = import_from_cwd(module_name, ref)
    target = getattr(module, attr, None)
    if not callable(target):
        known = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise _unknown(ref, attr, known, f"the callables of {module_name}")
    size = _declared_input(target, ref)

    def build(**overrides: Any) -> "nn.Module":
        from torch import nn

        with calling(ref, "building the model"):
            built = target(**overrides)
        if not isinstance(built, nn.Module):
            raise ConfigError(f"{ref} returned {type(built).__name__}, not a torch.nn.Module")
        return built

    doc = (getattr(target, "__doc__", None) or "").strip().splitlines()
    return _info(ref, build, size, "callable", doc[0] if doc else f"{ref} (user code)", build)


SOURCES: dict[str, Callable[[str, str], ModelInfo]] = {"torchvision": _torchvision, "timm": _timm}


def resolve_reference(ref: str) -> ModelInfo:
    """The ``ModelInfo`` of a ``source:NAME`` reference (see the module docstring)."""
    prefix, _, name = ref.partition(":")
    if not name:
        raise UnknownModelError(f"unknown model {ref!r}: nothing after ':'")
    if prefix in SOURCES:
        return SOURCES[prefix](ref, name)
    if all(part.isidentifier() for part in prefix.split(".")) and name.isidentifier():
        return _callable(ref, prefix, name)
    sources = ", ".join(f"{s}:NAME" for s in SOURCES)
    raise UnknownModelError(f"unknown model {ref!r}; references are {sources} or package.module:callable")

"""Drop a block into a backbone without writing a model: ``replace={"layer4.*.conv2": "stra"}``.

Keys are module paths as ``model.named_modules()`` names them, with ``*`` standing for one path
component (``layer4.*.conv2`` = the conv2 of every layer4 block). Values are a block name from
``BLOCKS`` or a user block ``package.module:Class`` importable from the working directory or
``PYTHONPATH``. Each matched module is replaced by ``Block(channels)`` (``channels`` = the
module's input channels), with ``stride=s`` added when the module changes the spatial size by
``s``: the house signature ``Block(channels, *, stride=1, ...)``.

Every replacement is checked before the model is used: one forward of the original model
records each matched module's input and output shapes, and the new block must map the one to
the other; a pattern that matches nothing, a block that cannot be built for those channels or
stride, or one whose output shape differs is refused in one line.
"""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Callable, Mapping

import torch
from torch import nn

from strabench.errors import ConfigError

#: Registered blocks by name: where each class lives (imported when used).
BLOCKS: dict[str, str] = {
    "stra": "strabench.layers.stra:StRA",
    "local": "strabench.layers.local_attention:LocalAttention",
    "mode": "strabench.layers.mode_attention:ModeAttention",
    "sasa": "strabench.layers.sasa:SASA",
    "se": "strabench.layers.se:SqueezeExcite",
    "eca": "strabench.layers.eca:ECA",
    "non_local": "strabench.layers.non_local:NonLocal",
}


def block_class(ref: str) -> Callable[..., nn.Module]:
    """The block class named ``ref``: a ``BLOCKS`` name or ``package.module:Class``."""
    import difflib

    from strabench.models.sources import _import_from_cwd

    path = BLOCKS.get(ref, ref)
    module_name, _, attr = path.partition(":")
    if not attr:
        close = difflib.get_close_matches(ref, list(BLOCKS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"blocks are {', '.join(BLOCKS)} or package.module:Class"
        raise ConfigError(f"replace: unknown block {ref!r}; {hint}")
    cls = getattr(_import_from_cwd(module_name, ref), attr, None)
    if not callable(cls):
        raise ConfigError(f"replace: {path!r} names no class in {module_name}")
    return cls


def _matches(pattern: str, name: str) -> bool:
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def apply_replacements(model: nn.Module, replace: Mapping[str, str], input_shape: tuple[int, int, int]) -> dict[str, str]:
    """Replace in place every module matching a key of ``replace``; returns ``{module: block}``."""
    if not isinstance(replace, Mapping):
        raise ConfigError(f"replace must map module patterns to blocks, e.g. {{'layer4.*.conv2': 'stra'}}, got {replace!r}")
    names = [name for name, _ in model.named_modules() if name]
    targets: dict[str, str] = {}
    matched_by: dict[str, str] = {}  # a module matched twice: refused, so the order of keys never matters
    for pattern, block in replace.items():
        found = [name for name in names if _matches(str(pattern), name)]
        if not found:
            close = _close(str(pattern), names)
            raise ConfigError(f"replace: {pattern!r} matches no module of the model{close}")
        for name in found:
            if name in matched_by:
                raise ConfigError(f"replace: {name} is matched by both {matched_by[name]!r} and {pattern!r}")
            targets[name], matched_by[name] = str(block), str(pattern)
    shapes = _io_shapes(model, list(targets), input_shape)
    new: dict[str, nn.Module] = {}
    for name, block in targets.items():
        if name not in shapes:
            raise ConfigError(f"replace: {name} does not run in the model's forward, so it cannot be replaced")
        (x_shape, y_shape) = shapes[name]
        new[name] = _build_checked(name, block, x_shape, y_shape)
    for name, module in new.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module)
    return targets


def _close(pattern: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else f" (e.g. {names[-1]})" if names else ""


def _io_shapes(model: nn.Module, targets: list[str], input_shape: tuple[int, int, int]) -> dict[str, tuple[tuple, tuple]]:
    """Input and output shapes of the ``targets`` for one image of ``input_shape`` (eval mode)."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    handles = []

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            if name not in shapes and inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))

        return hook

    for name in targets:
        handles.append(model.get_submodule(name).register_forward_hook(record(name)))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def _build_checked(name: str, block: str, x_shape: tuple, y_shape: tuple) -> nn.Module:
    from strabench.usercode import calling

    cls = block_class(block)
    if len(x_shape) != 4 or len(y_shape) != 4:
        raise ConfigError(f"replace: {name} maps {x_shape} to {y_shape}; blocks replace 4-d (B, C, H, W) modules")
    channels, stride = x_shape[1], x_shape[2] // max(1, y_shape[2])
    kwargs = {"stride": stride} if stride != 1 else {}
    # a user block (package.module:Class) is the user's code: whatever it raises is one line naming it
    boundary = calling if block not in BLOCKS else (lambda *_: contextlib.nullcontext())
    with boundary(block, f"building it for {name}, {channels} channels, stride {stride}"):
        try:
            module = cls(channels, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"replace: cannot build {block} for {name} ({channels} channels, stride {stride}): {exc}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"replace: {block} returned {type(module).__name__} for {name}, not a torch.nn.Module")
    module.eval()
    with torch.no_grad(), boundary(block, f"its forward at {name}'s input {tuple(x_shape)}"):
        try:
            out = module(torch.zeros(x_shape))
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"replace: {block} does not fit {name} (input {x_shape}): {str(exc).splitlines()[0]}") from None
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if got != tuple(y_shape):
        raise ConfigError(f"replace: {block} maps {name}'s input {x_shape} to {got}, but {name} gives {tuple(y_shape)}")
    module.train()
    return module

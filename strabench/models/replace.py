"""Drop a block into a backbone without writing a model: ``replace={"layer4.*.conv2": "stra"}``.

Keys are module paths as ``model.named_modules()`` names them, with ``*`` standing for one path
component (``layer4.*.conv2`` = the conv2 of every layer4 block). Values are a block
(``strabench.models.blocks``): a name, ``stra``, with settings if any, ``stra(groups=4)``; a
registered source's ``PREFIX:NAME``; or a user block ``package.module:Class``.

What happens depends on the block's kind, which the block declares:

- a ``"replace"`` block takes the module's place, built for the module's input and output
  channels and its ``stride`` attribute (a module without one must keep the spatial size);
- an ``"insert"`` block (a gate: SE, ECA, mode attention) follows the module, which stays:
  the two become ``Inserted(original, inserted)``, so ``layer4.0.conv2.original.weight`` is the
  kept convolution and ``layer4.0.conv2.inserted.*`` the new block.

A block whose spec is ``sized`` is also given the map size it will see (``size=(H, W)``: the
module's input for a replace block, its output for an insert block), from the same forward; a
strabench model holding one is then built for that input (its ``fixed_input``), so every caller
that runs it at another size rebuilds it there, as it does for the face models' sized heads.

Every replacement is checked before the model is used: one forward of the original model
records each matched module's input and output shapes, and the result must map the one to the
other; a pattern that matches nothing, a block that cannot be built for those channels or
stride, or one whose output shape differs is refused in one line.
"""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from strabench.errors import ConfigError, ShapeError
from strabench.models.blocks import BLOCKS, BlockSpec, resolve_block
from strabench.usercode import calling

__all__ = ["BLOCKS", "Inserted", "apply_replacements"]


class Inserted(nn.Module):
    """A module followed by an inserted block: ``inserted(original(x))``."""

    def __init__(self, original: nn.Module, inserted: nn.Module) -> None:
        super().__init__()
        self.original = original
        self.inserted = inserted

    def forward(self, x: Tensor) -> Tensor:
        return self.inserted(self.original(x))


def _matches(pattern: str, name: str) -> bool:
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def _spec(block: Any, pattern: str) -> BlockSpec:
    if not isinstance(block, str):
        raise ConfigError(f"replace: {pattern!r} maps to {block!r}; a block is named by a string such as 'stra' or 'stra(groups=4)'")
    try:
        return resolve_block(block)
    except ConfigError as exc:
        raise ConfigError(f"replace: {pattern!r}: {exc}") from None


def apply_replacements(model: nn.Module, replace: Mapping[str, str], input_shape: tuple[int, int, int]) -> dict[str, str]:
    """Replace (or follow, for an insert block) every module matching a key of ``replace``, in place.

    Returns ``{module: block}``.
    """
    if not isinstance(replace, Mapping):
        raise ConfigError(f"replace must map module patterns to blocks, e.g. {{'layer4.*.conv2': 'stra'}}, got {replace!r}")
    specs = {str(pattern): _spec(block, str(pattern)) for pattern, block in replace.items()}  # names first, no forward yet
    names = [name for name, _ in model.named_modules() if name]
    targets: dict[str, str] = {}
    matched_by: dict[str, str] = {}  # a module matched twice: refused, so the order of keys never matters
    for pattern in specs:
        found = [name for name in names if _matches(pattern, name)]
        if not found:
            raise ConfigError(f"replace: {pattern!r} matches no module of the model{_close(pattern, names)}")
        for name in found:
            if name in matched_by:
                raise ConfigError(f"replace: {name} is matched by both {matched_by[name]!r} and {pattern!r}")
            targets[name], matched_by[name] = pattern, pattern
    for name in targets:
        outer = next((other for other in targets if name.startswith(other + ".")), None)
        if outer is not None:
            raise ConfigError(f"replace: {name} lies inside {outer}, which is replaced too ({matched_by[outer]!r})")
    shapes = _io_shapes(model, list(targets), input_shape)
    new: dict[str, nn.Module] = {}
    for name, pattern in targets.items():
        if name not in shapes:
            raise ConfigError(f"replace: {name} does not run in the model's forward, so it cannot be replaced")
        new[name] = _build_checked(name, model.get_submodule(name), specs[pattern], *shapes[name])
    for name, module in new.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module)
    if any(specs[pattern].sized for pattern in targets.values()) and hasattr(model, "fixed_input"):
        model.fixed_input = tuple(input_shape[1:])  # fitted to these maps: rebuilt for another input, never reused
    return {name: specs[pattern].name for name, pattern in targets.items()}


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


def module_stride(name: str, module: nn.Module, x_shape: tuple, y_shape: tuple) -> int:
    """The stride of the module a block replaces: its ``stride`` attribute, one number for H and W.

    A module without one must keep the spatial size (stride 1); the output size alone cannot say
    the stride (a 3x3 stride-2 conv maps 11 -> 6, and 11 // 6 is 1).
    """
    stride = getattr(module, "stride", None)
    if stride is None:
        if tuple(x_shape[2:]) != tuple(y_shape[2:]):
            raise ConfigError(
                f"replace: {name} maps {tuple(x_shape[2:])} to {tuple(y_shape[2:])} but has no `stride` attribute to "
                f"say by how much; a block can replace it only where it keeps the size"
            )
        return 1
    values = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,)
    if not values or len(set(values)) != 1 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ConfigError(f"replace: {name} has stride {stride!r}; a block takes one stride for H and W")
    return int(values[0])


def _build_checked(name: str, module: nn.Module, spec: BlockSpec, x_shape: tuple, y_shape: tuple) -> nn.Module:
    if len(x_shape) != 4 or len(y_shape) != 4:
        raise ConfigError(f"replace: {name} maps {x_shape} to {y_shape}; blocks go where (B, C, H, W) maps do")
    stride = module_stride(name, module, x_shape, y_shape) if spec.kind == "replace" else 1
    if spec.kind == "replace":
        what, block_input = f"{x_shape[1]} -> {y_shape[1]} channels, stride {stride}", x_shape
    else:
        what, block_input = f"after it, {y_shape[1]} channels", y_shape
    # a block that is not one of the package's own (a user class, a block source's) is code strabench
    # did not write: whatever it raises is one line naming it
    boundary = (lambda *_: contextlib.nullcontext()) if spec.name.partition("(")[0] in BLOCKS else calling
    sized = {"size": tuple(block_input[2:])} if spec.sized else {}  # the map the block sees (BlockSpec.sized)
    with boundary(spec.name, f"building it for {name}, {what}"):
        try:
            if spec.kind == "replace":
                block = spec.factory(x_shape[1], y_shape[1], stride, **sized)
            else:
                block = spec.factory(y_shape[1], **sized)
        except ConfigError as exc:
            raise ConfigError(f"replace: {name}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"replace: cannot build {spec.name} for {name} ({what}): {' '.join(str(exc).split())}") from None
    if not isinstance(block, nn.Module):
        raise ConfigError(f"replace: {spec.name} built {type(block).__name__}, not a torch.nn.Module")
    block.eval()
    with torch.no_grad(), boundary(spec.name, f"its forward at {name}'s input {tuple(block_input)}"):
        try:
            out = block(torch.zeros(block_input))
        except (RuntimeError, ValueError, ShapeError, AssertionError) as exc:  # timm asserts sizes in forward
            reason = str(exc).splitlines()[0] if str(exc).strip() else f"{type(exc).__name__} in the block's forward"
            raise ConfigError(f"replace: {spec.name} does not fit {name} (input {block_input}): {reason}") from None
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if got != tuple(y_shape):
        where = f"{name}'s input" if spec.kind == "replace" else f"{name}'s output"
        raise ConfigError(f"replace: {spec.name} maps {where} {block_input} to {got}, but {name} gives {tuple(y_shape)}")
    block.train()
    if spec.kind == "insert":
        return Inserted(module, block)
    return block

"""Blocks by name, and what each one is: what ``replace`` puts into a model.

A block is one of two kinds, and says which (``replace`` never guesses):

- ``"replace"``: it takes the place of a convolution. Built ``Block(in_channels, *, stride=s,
  **settings)``, with ``s`` read from the replaced module; one whose width differs from its
  input's is built with ``out_channels=...`` too, if the class takes it (StRA, SASA, local
  attention keep the width).
- ``"insert"``: it follows a module and keeps its shape (a gate such as SE or ECA, mode
  attention, a non-local block). Built ``Block(channels, **settings)``; the module stays.

A name resolves through sources keyed by prefix, like model references
(``strabench.models.sources``):

- ``stra``, ``se``, ...: the blocks of this package (``BLOCKS``);
- ``PREFIX:NAME``: a registered block source (``register_block_source``), which turns a name and
  its settings into a ``BlockSpec``; ``timm-attn:NAME`` (timm's attention layers) is built in;
- ``package.module:Class``: a class importable from the working directory or ``PYTHONPATH``
  that declares its kind with a class attribute, ``block_kind = "replace"`` or ``"insert"``.

Settings travel with the name, ``stra(groups=4, kernel_size=5)``: keyword arguments whose values
are literals (numbers, booleans, strings, tuples of them), read with ``ast.literal_eval``, never
evaluated as code. ``format_block`` writes the one canonical text of a name and its settings.

This module imports no torch: naming and checking a block's syntax stays instant.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import keyword
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from strabench.errors import ConfigError
from strabench.models.imports import import_from_cwd

if TYPE_CHECKING:
    from torch import nn

#: The kinds a block can be (see the module docstring).
KINDS = ("replace", "insert")

#: The blocks of this package by name: where each class lives (imported when used).
BLOCKS: dict[str, str] = {
    "stra": "strabench.layers.stra:StRA",
    "local": "strabench.layers.local_attention:LocalAttention",
    "mode": "strabench.layers.mode_attention:ModeAttention",
    "sasa": "strabench.layers.sasa:SASA",
    "se": "strabench.layers.se:SqueezeExcite",
    "eca": "strabench.layers.eca:ECA",
    "non_local": "strabench.layers.non_local:NonLocal",
}

#: Arguments ``replace`` gives a block itself; a setting may not name them.
STRUCTURAL = ("stride", "out_channels", "in_channels", "channels")


@dataclass(frozen=True)
class BlockSpec:
    """A block ready to build: its name for messages, its kind and a factory bound to its settings.

    ``factory(in_channels, out_channels, stride)`` for a ``"replace"`` block,
    ``factory(channels)`` for an ``"insert"`` block. A factory raises ``ConfigError`` (or
    ``ValueError``/``TypeError`` from the block) for a size it cannot take.

    ``sized``: the factory also takes ``size=(H, W)``, the feature map the block will see (the
    replaced module's input, or the output of the module an insert block follows), for blocks
    built for one map size (timm's bottleneck attention) or checked against it (halo blocks
    tiling the map). ``replace`` knows it from the forward that checks every replacement.
    """

    name: str
    kind: str
    factory: Callable[..., "nn.Module"]
    sized: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"block {self.name!r} has kind {self.kind!r}; a block's kind is {' or '.join(KINDS)}")


#: A block source: ``(NAME, settings) -> BlockSpec`` for the references ``PREFIX:NAME``.
BlockSource = Callable[[str, Mapping[str, Any]], BlockSpec]

#: Registered block sources by prefix: a callable, or ``"package.module:function"`` imported when used.
#: ``timm-attn``: timm's attention layers (``strabench.models.timm_blocks``, needs the timm extra).
BLOCK_SOURCES: dict[str, "BlockSource | str"] = {"timm-attn": "strabench.models.timm_blocks:timm_attention"}


def register_block_source(prefix: str, source: "BlockSource | str") -> None:
    """Make ``PREFIX:NAME[(settings)]`` resolve through ``source`` (a duplicate prefix raises)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", prefix):
        raise ValueError(f"a block source prefix is lower-case letters, digits, '-' and '_', got {prefix!r}")
    if prefix in BLOCK_SOURCES:
        raise ValueError(f"block source {prefix!r} is already registered")
    BLOCK_SOURCES[prefix] = source


# --- text: NAME or NAME(key=value, ...) ---------------------------------------------------------------

_REF = re.compile(r"\s*([^\s()=,]+)\s*(?:\((.*)\))?\s*", re.DOTALL)


def _literal(value: Any, where: str) -> Any:
    """A setting's value as a plain literal: int, float, bool, str, or a tuple of those (lists become tuples)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_literal(v, where) for v in value)
    raise ConfigError(f"{where}: expected a number, boolean, string or a tuple of them, got {value!r}")


def parse_block(text: str) -> tuple[str, dict[str, Any]]:
    """``"stra(groups=4, border='mask')"`` -> ``("stra", {"groups": 4, "border": "mask"})``.

    Values are literals only (``ast.literal_eval``); anything else is a one-line ``ConfigError``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"a block is named by a string such as 'stra' or 'stra(groups=4)', got {text!r}")
    match = _REF.fullmatch(text)
    if not match:
        raise ConfigError(f"block {text!r}: expected NAME or NAME(key=value, ...), e.g. 'stra(groups=4)'")
    name, args = match.group(1), match.group(2)
    settings: dict[str, Any] = {}
    if args is None or not args.strip():
        return name, settings
    try:
        call = ast.parse(f"_({args})", mode="eval").body
    except SyntaxError:
        raise ConfigError(f"block {text!r}: settings must look like key=value, ... (e.g. 'stra(groups=4)')") from None
    assert isinstance(call, ast.Call)
    if call.args:
        raise ConfigError(f"block {text!r}: settings are named, key=value (e.g. 'stra(groups=4)')")
    for keyword in call.keywords:
        if keyword.arg is None:  # **mapping
            raise ConfigError(f"block {text!r}: settings are named, key=value (e.g. 'stra(groups=4)')")
        try:
            value = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ConfigError(
                f"block {text!r}: setting {keyword.arg!r} must be a literal (number, boolean, string or tuple)"
            ) from None
        settings[keyword.arg] = _literal(value, f"block {text!r}: setting {keyword.arg!r}")
    return name, settings


def format_block(name: str, settings: Mapping[str, Any]) -> str:
    """The canonical text of a block and its settings (keys sorted): ``stra(groups=4, kernel_size=5)``."""
    if not settings:
        return name
    return f"{name}({', '.join(f'{key}={settings[key]!r}' for key in sorted(settings))})"


def block_from_table(table: Mapping[str, Any], where: str) -> str:
    """The table form ``{block = "stra", groups = 4}`` as canonical text; errors name ``where.KEY``."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a block name or a table with `block` and its settings, got {table!r}")
    if "block" not in table:
        raise ConfigError(f"{where}.block: missing (the block's name, e.g. block = \"stra\", beside its settings)")
    name = table["block"]
    if not isinstance(name, str) or not re.fullmatch(r"\s*[^\s()=,]+\s*", name):
        raise ConfigError(f"{where}.block: expected a block name such as \"stra\" (settings go beside it), got {name!r}")
    settings = {}
    for key, value in table.items():
        if key != "block":
            if not key.isidentifier() or keyword.iskeyword(key):
                raise ConfigError(f"{_key(where, key)}: a block setting is named like a Python argument "
                                  f"(letters, digits, _; not a keyword such as 'as')")
            settings[key] = _literal(value, _key(where, key))
    return format_block(name.strip(), settings)


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"{where}.{key!r}"


def canonical_block(text: str) -> str:
    """``text`` checked and rewritten canonically (``'stra( groups = 4 )'`` -> ``'stra(groups=4)'``)."""
    return format_block(*parse_block(text))


# --- resolving: name + settings -> BlockSpec --------------------------------------------------------


def resolve_block(text: str) -> BlockSpec:
    """The ``BlockSpec`` of ``NAME[(settings)]``; unknown names and settings are one-line ``ConfigError``s."""
    name, settings = parse_block(text)
    prefix, sep, rest = name.partition(":")
    if not sep:
        if name not in BLOCKS:
            close = difflib.get_close_matches(name, list(BLOCKS), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else _known()
            raise ConfigError(f"unknown block {name!r}; {hint}")
        module_name, _, attr = BLOCKS[name].partition(":")
        return class_block(format_block(name, settings), getattr(import_from_cwd(module_name), attr), settings)
    if not rest:
        raise ConfigError(f"unknown block {name!r}: nothing after ':'")
    if prefix in BLOCK_SOURCES:
        source = BLOCK_SOURCES[prefix]
        if isinstance(source, str):
            module_name, _, attr = source.partition(":")
            source = getattr(import_from_cwd(module_name), attr)
        return source(rest, settings)
    if all(part.isidentifier() for part in prefix.split(".")) and rest.isidentifier():
        try:
            module = import_from_cwd(prefix, name)
        except ConfigError as exc:
            raise ConfigError(f"unknown block {name!r} ({exc}); {_known()}") from None
        cls = getattr(module, rest, None)
        if not isinstance(cls, type):
            raise ConfigError(f"{name!r} names no class in {prefix}")
        if getattr(cls, "block_kind", None) is None:
            raise ConfigError(
                f"{name} does not say what kind of block it is: give the class block_kind = \"replace\" "
                f"(it takes a convolution's place) or block_kind = \"insert\" (it follows the module)"
            )
        return class_block(format_block(name, settings), cls, settings)
    raise ConfigError(f"unknown block {name!r}; {_known()}")


def _known() -> str:
    sources = "".join(f", {prefix}:NAME" for prefix in BLOCK_SOURCES)
    return f"blocks are {', '.join(BLOCKS)}{sources} or package.module:Class"


def class_block(name: str, cls: type, settings: Mapping[str, Any], kind: str | None = None) -> BlockSpec:
    """A ``BlockSpec`` for a class built ``cls(channels, **keywords)``; ``kind`` defaults to its ``block_kind``.

    Settings are checked against the class's signature here, before anything is built: an unknown
    one, or one that names what ``replace`` gives (``stride``, ``out_channels``), is refused naming it.
    """
    kind = kind if kind is not None else getattr(cls, "block_kind", None)
    if kind not in KINDS:
        raise ConfigError(f"block {name!r} has block_kind {kind!r}; a block's kind is {' or '.join(KINDS)}")
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): settings are checked when built
        parameters = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    named = {p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters)
    for key in settings:
        if key in STRUCTURAL or (parameters and key == parameters[0].name):
            raise ConfigError(f"block {name!r}: {key!r} is not a setting: replace takes it from the module it replaces or follows")
        if key not in named and not open_ended:
            takes = ", ".join(sorted(n for n in named if n not in STRUCTURAL)) or "none"
            raise ConfigError(f"block {name!r} has no setting {key!r}; its settings: {takes}")
    takes_stride = "stride" in named or open_ended
    takes_out = "out_channels" in named or open_ended
    bound = dict(settings)

    if kind == "insert":
        def insert(channels: int) -> "nn.Module":
            return cls(channels, **bound)

        return BlockSpec(name, kind, insert)

    def replace(in_channels: int, out_channels: int, stride: int) -> "nn.Module":
        keywords = dict(bound)
        if stride != 1 or "stride" in named:
            if not takes_stride:
                raise ConfigError(f"{name} takes no stride, and the module it would replace has stride {stride}")
            keywords["stride"] = stride
        if out_channels != in_channels:
            if not takes_out:
                raise ConfigError(
                    f"{name} keeps the channel count (C -> C), and the module it would replace maps "
                    f"{in_channels} -> {out_channels} channels"
                )
            keywords["out_channels"] = out_channels
        return cls(in_channels, **keywords)

    return BlockSpec(name, kind, replace)

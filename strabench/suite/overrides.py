"""Command-line overrides of a suite file: ``strabench run SUITE train.epochs=3 seeds=[0,1]``.

An override is ``KEY=VALUE`` where KEY is a dotted path into the suite file as written in TOML
(quoted parts for keys with dots: ``variants.stra.replace."layer4.*.conv2"=sasa``) and VALUE
a TOML value (``3``, ``1e-4``, ``[0, 1]``, ``{ rounds = 5 }``, ``"text"``); a VALUE that is not
TOML is taken as text, so ``data=market1501:/data/Market-1501`` needs no quotes. Variants are
addressed by name, ``variants.stra.model=resnet50_sasa``. Hydra's prefixes: ``+variants.eca.model=
resnet50_eca`` adds a variant, ``~KEY`` deletes a key (``~measure.latency``, ``~variants.local``).

Overrides are applied to the decoded file before it is checked, so an overridden suite is
checked exactly as the file itself (``strabench.suite.config.parse_suite``): the same one-line
errors, naming the key, plus the override that set it. What they change reaches each run's
resolved config and hash like the file's own values; the override texts are recorded in the
suite's plan.json and each run's run.json.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError, StrabenchError
from strabench.suite.config import _TOP_KEYS, SuiteConfig, load_suite, parse_suite, read_suite_table, resolve_suite_path, train_fields
from strabench.train.config import key_path

__all__ = ["Override", "apply_overrides", "load_suite_with_overrides", "parse_override", "run_overrides"]


@dataclass(frozen=True)
class Override:
    """One ``KEY=VALUE`` (``op`` "set"), ``+KEY=VALUE`` ("add") or ``~KEY`` ("delete")."""

    text: str
    op: str
    path: tuple[str, ...]
    value: Any = None


def _fail(text: str, message: str) -> ConfigError:
    return ConfigError(f"override {text!r}: {message}")


def _key_parts(text: str, key: str) -> tuple[str, ...]:
    """A TOML dotted key, parsed by TOML itself (bare or quoted parts)."""
    if not key.strip():
        raise _fail(text, "expected KEY=VALUE, e.g. train.epochs=3")
    try:
        table = tomllib.loads(f"{key} = 0")
    except (tomllib.TOMLDecodeError, RecursionError):
        raise _fail(text, f"{key.strip()!r} is not a key; parts are names or quoted strings joined by dots") from None
    parts: list[str] = []
    node: Any = table
    while isinstance(node, dict):
        if len(node) != 1:
            raise _fail(text, f"{key.strip()!r} is not one key")
        name, node = next(iter(node.items()))
        parts.append(name)
    if node != 0:
        raise _fail(text, f"{key.strip()!r} is not one key")
    return tuple(parts)


def _value(text: str, raw: str) -> Any:
    """A TOML value, or the text itself when it is not one (``profile=paper``)."""
    raw = raw.strip()
    try:
        table = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        if "\n" in raw or "\r" in raw:
            raise _fail(text, "a value is one line") from None
        return raw
    except RecursionError:
        raise _fail(text, "value nested too deeply") from None
    if list(table) != ["v"]:
        raise _fail(text, f"{raw!r} is more than one value")
    return table["v"]


def parse_override(text: str) -> Override:
    """``KEY=VALUE``, ``+KEY=VALUE`` or ``~KEY`` -> Override; anything else is a one-line ConfigError."""
    if not isinstance(text, str):
        raise ConfigError(f"an override is a string KEY=VALUE, got {text!r}")
    if text.startswith("~"):
        key, sep, _ = text[1:].partition("=")
        if sep:
            raise _fail(text, "~KEY deletes a key and takes no value")
        return Override(text, "delete", _key_parts(text, key))
    op = "add" if text.startswith("+") else "set"
    key, sep, raw = (text[1:] if op == "add" else text).partition("=")
    if not sep:
        raise _fail(text, "expected KEY=VALUE (e.g. train.epochs=3), +KEY=VALUE to add or ~KEY to delete")
    path = _key_parts(text, key)
    return Override(text, op, path, _value(text, raw))


def _plain_path(path: Iterable[str]) -> str:
    out = ""
    for part in path:
        out = key_path(out, part)
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[Override]) -> tuple[dict[str, Any], dict[str, str]]:
    """The decoded suite file with the overrides applied, in order, and for each override the key
    path that ``parse_suite``'s messages use for what it set (``variants[1].model``)."""
    data = copy.deepcopy(dict(raw))
    touched: dict[str, str] = {}
    for override in overrides:
        touched[override.text] = _apply(data, override)
    return data, touched


def _apply(data: dict[str, Any], override: Override) -> str:
    path = override.path
    text = override.text
    head = path[0]
    if head not in _TOP_KEYS:
        if head in train_fields():
            raise _fail(text, f"{head!r} is a training setting: write train.{text.lstrip('+~')}")
        close = difflib.get_close_matches(head, _TOP_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(text, f"unknown key {head!r}{hint}; expected one of {', '.join(_TOP_KEYS)}")
    if head == "variants" and len(path) > 1:
        return _apply_variant(data, override)
    if head == "variants":
        if override.op == "delete":
            raise _fail(text, "a suite needs its variants; delete one with ~variants.NAME")
        raise _fail(text, "address a variant by name: variants.NAME.KEY=VALUE (e.g. variants.stra.model=resnet50_sasa)")
    _set(data, path, override, prefix="")
    return _plain_path(path)


def _apply_variant(data: dict[str, Any], override: Override) -> str:
    text, path = override.text, override.path
    variants = data.get("variants")
    if not isinstance(variants, list):
        raise _fail(text, "the suite file has no [[variants]] array")
    name = path[1]
    index = next((i for i, v in enumerate(variants) if isinstance(v, dict) and v.get("name") == name), None)
    names = [str(v.get("name")) for v in variants if isinstance(v, dict)]
    if index is None:
        if override.op != "add":
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _fail(text, f"no variant named {name!r}; {hint}variants: {', '.join(names)} (add one with +variants.{name}.model=...)")
        variants.append({"name": name})
        index = len(variants) - 1
    prefix = f"variants[{index}]"
    if len(path) == 2:
        if override.op == "delete":
            del variants[index]
            return prefix
        if not isinstance(override.value, dict):
            raise _fail(text, f"a variant is a table, e.g. variants.{name}={{ model = \"resnet50_stra\" }}")
        variants[index] = {"name": name, **override.value}
        return prefix
    _set(variants[index], path[2:], override, prefix=prefix)
    return f"{prefix}.{_plain_path(path[2:])}"


def _set(table: dict[str, Any], path: tuple[str, ...], override: Override, *, prefix: str) -> None:
    """Walk to the parent table (creating tables for set/add), then set or delete the last key."""
    text = override.text
    node = table
    walked: list[str] = []
    for part in path[:-1]:
        walked.append(part)
        child = node.get(part)
        if child is None:
            if override.op == "delete":
                raise _fail(text, f"nothing to delete: {_where(prefix, walked)} is not set")
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise _fail(text, f"{_where(prefix, walked)} is {child!r}, not a table; set it whole, e.g. {_plain_path(walked)}={{ ... }}")
        node = child
    last = path[-1]
    if override.op == "delete":
        if last not in node:
            raise _fail(text, f"nothing to delete: {_where(prefix, path)} is not set")
        del node[last]
    else:
        node[last] = override.value


def _where(prefix: str, parts: Iterable[str]) -> str:
    inner = _plain_path(parts)
    return f"{prefix}.{inner}" if prefix else inner


def load_suite_with_overrides(suite: str | Path, texts: Iterable[str], *, warn: Callable[[str], None] | None = None) -> SuiteConfig:
    """``load_suite`` with overrides applied before the checks; the result's ``overrides`` holds them.

    ``warn`` receives one line per override that the file shadows (``train.epochs=3`` where
    ``[train.quick]`` sets epochs too: the profile's table wins, as it would in the file)."""
    texts = list(texts)
    if not texts:
        return load_suite(suite)
    overrides = [parse_override(t) for t in texts]
    path = resolve_suite_path(suite)
    raw = read_suite_table(path)
    data, touched = apply_overrides(raw, overrides)
    try:
        config = parse_suite(data, path)
    except StrabenchError as exc:
        raise ConfigError(_attributed(str(exc), path, touched)) from None
    if warn is not None:
        for line in shadowed(data, overrides):
            warn(line)
    return replace(config, overrides=tuple(texts))


def shadowed(data: Mapping[str, Any], overrides: Iterable[Override]) -> list[str]:
    """Overrides of ``train.KEY`` that a profile's table or a variant's ``train`` sets again
    (those win: ``[train]`` < ``[train.PROFILE]`` < ``variants.NAME.train``)."""
    from strabench.suite.config import PROFILES

    lines = []
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    for override in overrides:
        path = override.path
        if override.op == "delete" or len(path) != 2 or path[0] != "train" or path[1] in PROFILES:
            continue
        key = path[1]
        where = [f"train.{p}.{key}" for p in PROFILES if isinstance(train.get(p), dict) and key in train[p]]
        where += [f"variants.{v.get('name')}.train.{key}" for v in data.get("variants") or []
                  if isinstance(v, dict) and isinstance(v.get("train"), dict) and key in v["train"]]
        if where:
            lines.append(f"override {override.text!r}: {', '.join(where)} also set{'s' if len(where) == 1 else ''} {key} and "
                         f"take{'s' if len(where) == 1 else ''} precedence where it applies; set {where[0]}=... to change it there")
    return lines


def _attributed(message: str, path: Path, touched: Mapping[str, str]) -> str:
    """The checker's message, plus the override(s) that set the key it names."""
    key = message.removeprefix(f"{path}: ").split(": ", 1)[0]
    mine = [text for text, where in touched.items()
            if key == where or key.startswith((f"{where}.", f"{where}[")) or where.startswith((f"{key}.", f"{key}["))]
    shown = mine or list(touched)
    label = "from override" if mine else "with overrides"
    return f"{message} ({label} {', '.join(repr(t) for t in shown)})"


def run_overrides(suite: SuiteConfig, variant: str) -> tuple[str, ...]:
    """The suite's overrides that concern one variant's runs: all but those of other variants
    (a variant renamed by ``variants.OLD.name=NEW`` keeps the overrides given under its old name)."""
    common: list[int] = []
    by_variant: dict[str, list[int]] = {}
    for index, text in enumerate(suite.overrides):
        override = parse_override(text)
        path = override.path
        if path[0] != "variants" or len(path) < 2:
            common.append(index)
            continue
        by_variant.setdefault(path[1], []).append(index)
        if path[2:] == ("name",) and override.op != "delete" and isinstance(override.value, str):
            by_variant.setdefault(override.value, []).extend(by_variant.pop(path[1]))
    mine = set(common) | set(by_variant.get(variant, []))
    return tuple(text for index, text in enumerate(suite.overrides) if index in mine)

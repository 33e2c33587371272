"""Checking the values of a suite file: one-line errors naming the file, the key and the value.

``_Checker`` carries the file's path and turns every refusal into a ``ConfigError`` like
``suites/x.toml: variants[1].train.epochs: expected an integer, got 'two'``; ``_check_typed``
checks a value against a ``TrainConfig`` field's annotation, so a suite's ``[train]`` table is
held to the same types as the training config itself. ``strabench.suite.config`` parses the
file's structure with these.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.train.config import check_plain_value, key_path

PROFILES = ("quick", "paper")
#: TrainConfig fields a suite sets itself (a [train] table may not).
SUITE_OWNED = ("model", "task", "data", "profile", "seed", "model_overrides")


class _Checker:
    """Raises one-line ConfigErrors that name the file and the key path.

    Key names taken from the file go through ``key_path`` (quoted unless bare), so a key
    holding a newline still gives a one-line message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.path}: {key}: {message}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_describe(value)}")
        return value

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
        for name in table:
            if name not in allowed:
                where = key_path(key, name)
                import difflib

                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(where, f"unknown key{hint}; expected one of {', '.join(allowed)}")

    def string(self, value: Any, key: str, *, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, value: Any, key: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_describe(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {_describe(value)}")
        if positive and not value > 0:
            self.fail(key, f"expected a number > 0, got {value}")
        return float(value)

    def size(self, value: Any, key: str) -> tuple[int, int]:
        """'256x128' or [256, 128]."""
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
            if match and int(match.group(1)) > 0 and int(match.group(2)) > 0:
                return int(match.group(1)), int(match.group(2))
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            return value[0], value[1]
        self.fail(key, f"expected HEIGHTxWIDTH like \"256x128\" or [256, 128], got {_describe(value)}")


def _check_plain(check: _Checker, key: str, value: Any) -> None:
    """A value the run's config.toml and hash can hold (no dates, inf or nan): refused at load time."""
    try:
        check_plain_value(key, value)
    except ConfigError as exc:
        raise ConfigError(f"{check.path}: {exc}") from None


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, dict) else "a table"


def _check_typed(check: _Checker, value: Any, annotation: Any, key: str) -> Any:
    """Check a TOML value against a TrainConfig field annotation; lists become tuples where typed so."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check_typed(check, value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if errors:
            raise ConfigError(errors[0])
        return value
    if origin is typing.Literal:
        if value not in args:
            check.fail(key, f"expected one of {', '.join(repr(a) for a in args)}, got {_describe(value)}")
        return value
    if annotation is bool:
        return check.boolean(value, key)
    if annotation is int:
        return check.integer(value, key)
    if annotation is float:
        return check.number(value, key)
    if annotation is str:
        return check.string(value, key)
    if origin is tuple or annotation is tuple:
        if not isinstance(value, list):
            check.fail(key, f"expected an array, got {_describe(value)}")
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            check.fail(key, f"expected an array of {len(args)} values, got {_describe(value)}")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if item_types:
            return tuple(_check_typed(check, v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, item_types)))
        return tuple(value)
    if origin in (dict, Mapping) or annotation is dict or origin is typing.get_origin(Mapping[str, int]):
        table = dict(check.table(value, key))
        for name, item in table.items():
            _check_plain(check, key_path(key, name), item)
        return table
    return value  # an annotation we do not model: TrainConfig's own checks (resolve) decide


def train_fields() -> dict[str, Any]:
    """TrainConfig's field annotations, minus the fields a suite sets per run."""
    from strabench.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainConfig) if f.name not in SUITE_OWNED}


def _check_train_table(check: _Checker, table: Mapping[str, Any], key: str, *, allow_profiles: bool) -> tuple[dict, dict]:
    fields = train_fields()
    allowed = tuple(fields) + (PROFILES if allow_profiles else ())
    owned = [name for name in table if name in SUITE_OWNED]
    if owned:
        hint = "use the variant's `overrides`" if owned[0] == "model_overrides" else "it is set by the suite"
        check.fail(f"{key}.{owned[0]}", f"not allowed in a train table ({hint})")
    check.keys(table, allowed, key)
    common: dict[str, Any] = {}
    per_profile: dict[str, dict[str, Any]] = {}
    for name, value in table.items():
        if name in PROFILES:
            sub = check.table(value, f"{key}.{name}")
            per_profile[name], _ = _check_train_table(check, sub, f"{key}.{name}", allow_profiles=False)
            continue
        common[name] = _check_typed(check, value, fields[name], f"{key}.{name}")
    return common, per_profile

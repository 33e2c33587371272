"""Print a run's resolved configuration; with --diff, only what differs from another run.

RUN_DIR is a run directory of a suite (results/<suite>/<run-id>/) or of `strabench train`
(runs/...). Printed as TOML dotted keys, one per line: run.* (suite, variant, seed, hash and
the command-line overrides that made it, from run.json), train.* (the resolved training config,
config.toml), measure.* (what the suite measured); --env adds env.* (versions, commit, machine,
from env.json). --diff OTHER_RUN_DIR prints only the keys whose values differ, side by side.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from strabench.errors import ConfigError

_HASH_LINE = re.compile(r"^# config_hash = ([0-9a-f]+)$", re.MULTILINE)
MISSING = "(absent)"


def show_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory: results/<suite>/<run-id>/ or a `strabench train` run.")],
    diff: Annotated[Path | None, typer.Option("--diff", help="Another run directory: print only the keys that differ.")] = None,
    env: Annotated[bool, typer.Option("--env", help="Also the environment the run was made in (env.json: versions, commit, machine).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: the keys and values (with --diff: the differing ones).")] = False,
) -> None:
    from strabench.cli._common import console, print_json

    mine = run_settings(run_dir, env=env)
    if diff is None:
        if as_json:
            print_json(mine)
            return
        out = console()
        out.soft_wrap = True  # a long value stays on one line
        for key, value in mine.items():
            out.print(f"{key} = {_value(value)}", highlight=False, markup=False)
        return
    other = run_settings(diff, env=env)
    rows = differences(mine, other)
    if as_json:
        print_json([{"key": k, "a": a, "b": b} for k, a, b in rows])
        return
    out = console()
    out.soft_wrap = True  # paths and values stay whole (the table never cuts a cell either)
    if not rows:
        out.print(f"{run_dir} and {diff}: no differences" + ("" if env else " (--env compares their environments too)"), highlight=False)
        return
    from strabench.report.terminal import print_table

    cells = [[key, MISSING if a is _ABSENT else _value(a), MISSING if b is _ABSENT else _value(b)] for key, a, b in rows]
    print_table(out, ["key", str(run_dir), str(diff)], cells, right=lambda index: False)
    out.print(f"{len(rows)} key(s) differ" + ("" if env else "; --env compares their environments too"), highlight=False)


class _Absent:
    def __repr__(self) -> str:
        return MISSING


_ABSENT: Any = _Absent()


def run_settings(run_dir: Path, *, env: bool = False) -> dict[str, Any]:
    """The run's settings as flat dotted keys: run.*, train.*, measure.* (and env.*)."""
    from strabench.io import read_json_object
    from strabench.suite.store import CONFIG_TOML, RUN_JSON

    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    config_path = run_dir / CONFIG_TOML
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{run_dir}: no {CONFIG_TOML} here (not a run directory, or the run never started)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc}") from None
    try:
        train = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{config_path}: invalid TOML: {exc}") from None
    settings: dict[str, Any] = {}
    identity = read_json_object(run_dir / RUN_JSON) or {}
    measure = identity.pop("measure", None)
    for key in ("suite", "variant", "model", "seed", "hash", "run_id", "overrides"):
        if key in identity:
            settings[f"run.{key}"] = identity[key]
    found = _HASH_LINE.search(text)
    if found:
        settings["train.config_hash"] = found.group(1)
    _flatten(settings, "train", train)
    if isinstance(measure, dict):
        _flatten(settings, "measure", measure)
    if env:
        _flatten(settings, "env", read_json_object(run_dir / "env.json") or {})
    return settings


def _flatten(out: dict[str, Any], prefix: str, table: dict[str, Any]) -> None:
    from strabench.train.config import key_path

    for key, value in table.items():
        name = key_path(prefix, key)
        if isinstance(value, dict) and value:
            _flatten(out, name, value)
        else:
            out[name] = value


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every key whose values differ or that only one has."""
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _value(value: Any) -> str:
    """A TOML-like value (JSON's spelling of strings, arrays, numbers and booleans)."""
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def register(app: typer.Typer) -> None:
    app.command("show", help=__doc__)(show_command)

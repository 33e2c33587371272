"""The complexity table that ``strabench list`` shows without building a model.

``strabench/models/complexity.json`` holds, per built-in model, params and paper-convention
MACs at its default input, written by ``python -m strabench.measure.golden --write`` from the
live models (``--check`` says which entries are missing or stale, without writing);
``tests/measure/test_golden.py`` requires an entry for every registered model and recomputes
each one, so the table can neither lack a model nor go stale. The file ships as package data.

A model outside that table (one the user registered, ``timm:NAME``, ``package.module:callable``)
is built and counted once (about a second) and its entry kept in a user cache file
(``complexity_table(..., cache=PATH)``; the CLI passes ``<strabench cache>/complexity.json``).
Cached entries are plain numbers keyed by the model's name and a fingerprint of what built it
(strabench, torch and the source library's versions, and the SHA-256 of the file defining the
builder), so an edited builder or an upgraded library is counted afresh; an entry that is not
exactly that shape is ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

CACHE_PATH = Path(__file__).resolve().parent.parent / "models" / "complexity.json"
ENTRY_KEYS = ("input", "params", "macs_paper")


def read_cache(path: Path = CACHE_PATH) -> dict[str, dict]:
    """The committed table (empty if absent or unreadable: ``list`` then computes entries live)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return {name: entry for name, entry in table.items() if _valid_entry(entry)} if isinstance(table, dict) else {}


def _valid_entry(entry: Any) -> bool:
    """An entry is data of one exact shape: three-int input, int params and MACs."""
    if not isinstance(entry, dict) or set(entry) - {*ENTRY_KEYS, "fingerprint"} or not all(k in entry for k in ENTRY_KEYS):
        return False
    shape = entry["input"]
    ints = (entry["params"], entry["macs_paper"])
    return (
        isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)
        and all(type(v) is int and v >= 0 for v in ints)
    )


def complexity_table(names: list[str], *, cache: Path | None = None) -> dict[str, dict]:
    """Entries for ``names``: from the committed table, else from ``cache`` (a user cache file)
    when its entry's fingerprint matches, else computed live (and then stored in ``cache``)."""
    shipped = read_cache()
    out: dict[str, dict] = {}
    missing = [name for name in names if name not in shipped]
    cached = _read_user_cache(cache) if cache is not None and missing else {}
    fresh: dict[str, dict] = {}
    for name in names:
        if name in shipped:
            out[name] = shipped[name]
            continue
        fingerprint = model_fingerprint(name)
        entry = cached.get(name)
        if entry is not None and entry.get("fingerprint") == fingerprint:
            out[name] = {k: entry[k] for k in ENTRY_KEYS}
            continue
        out[name] = compute_entry(name)
        fresh[name] = {**out[name], "fingerprint": fingerprint}
    if fresh and cache is not None:
        _write_user_cache(cache, {**cached, **fresh})
    return out


def _read_user_cache(path: Path) -> dict[str, dict]:
    entries = read_cache(path)
    return {name: entry for name, entry in entries.items() if isinstance(entry.get("fingerprint"), str)}


def _write_user_cache(path: Path, entries: dict[str, dict]) -> None:
    """Best effort: a cache that cannot be written costs only the time of counting again."""
    from strabench.errors import WriteError
    from strabench.io import atomic_write_json, ensure_directory

    try:
        ensure_directory(path.parent)
        atomic_write_json(path, entries)
    except (WriteError, OSError):
        pass


def model_fingerprint(name: str) -> str:
    """What an entry of ``name`` depends on, hashed: versions and the builder's source file."""
    from importlib import metadata

    from strabench import __version__
    from strabench.registry import model_info

    info = model_info(name)
    parts = [f"strabench {__version__}", f"source {info.source}"]
    for package in ("torch", *((info.source,) if info.source in ("timm", "torchvision") else ())):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} ?")
    module_name = name.partition(":")[0] if info.source == "callable" else getattr(info.builder, "__module__", None)
    module_file = getattr(sys.modules.get(module_name or ""), "__file__", None)
    if module_file:
        try:
            parts.append(hashlib.sha256(Path(module_file).read_bytes()).hexdigest())
        except OSError:
            parts.append(f"unreadable {module_file}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def compute_entry(name: str) -> dict:
    """Params and paper-convention MACs of one model at its default input."""
    from strabench.measure.flops import count_macs
    from strabench.measure.params import count_params
    from strabench.registry import create_model, model_info

    info = model_info(name)
    model = create_model(name)
    shape = (info.default_input[0], *info.input_size())
    return {
        "input": list(shape),
        "params": count_params(model),
        "macs_paper": count_macs(model, shape, "paper").total,
    }


def table_differences(live: dict[str, dict], committed: dict[str, dict]) -> list[str]:
    """One line per model whose committed entry is missing, stale or left over."""
    lines = [f"{name}: missing" for name in live if name not in committed]
    lines += [f"{name}: stale ({committed[name]} != {live[name]})" for name in live if name in committed and committed[name] != live[name]]
    lines += [f"{name}: not a registered model" for name in committed if name not in live]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recompute params and paper-convention MACs of every built-in model.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite strabench/models/complexity.json")
    action.add_argument("--check", action="store_true", help="exit 1, naming them, if entries are missing or stale")
    args = parser.parse_args(argv)
    from strabench.io import atomic_write_json
    from strabench.registry import list_models

    table = {name: compute_entry(name) for name in list_models()}
    if args.write:
        atomic_write_json(CACHE_PATH, table)
        print(f"wrote {len(table)} entries to {CACHE_PATH}")
        return 0
    if args.check:
        problems = table_differences(table, read_cache())
        for line in problems:
            print(line)
        print(f"{len(problems)} problem(s); fix with: python -m strabench.measure.golden --write" if problems else f"all {len(table)} entries current")
        return 1 if problems else 0
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

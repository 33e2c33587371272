"""The complexity table that ``strabench list`` shows without importing torch.

``strabench/models/complexity.json`` holds, per registered model, params and paper-convention
MACs at its default input, written by ``python -m strabench.measure.golden --write`` from the
live models; ``tests/measure/test_golden.py`` recomputes every entry, so it cannot go stale.
A model registered after the table was written is not in it: ``complexity_table`` computes its
entry live (about a second each), so adding a model regenerates nothing. The file ships as
package data, so an installed strabench has it too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CACHE_PATH = Path(__file__).resolve().parent.parent / "models" / "complexity.json"


def read_cache() -> dict[str, dict]:
    """The committed table (empty if absent or unreadable: ``list`` then shows '?')."""
    try:
        return json.loads(CACHE_PATH.read_text())
    except (OSError, ValueError):
        return {}


def complexity_table(names: list[str]) -> dict[str, dict]:
    """Entries for ``names``: from the committed table, or computed live for models absent from it."""
    table = read_cache()
    return {name: table[name] if name in table else compute_entry(name) for name in names}


def compute_entry(name: str) -> dict:
    """Params and paper-convention MACs of one registered model at its default input."""
    from strabench.measure.flops import count_macs
    from strabench.measure.params import count_params
    from strabench.registry import create_model, model_info

    info = model_info(name)
    model = create_model(name)
    return {
        "input": list(info.default_input),
        "params": count_params(model),
        "macs_paper": count_macs(model, info.default_input, "paper").total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the committed table")
    args = parser.parse_args()
    from strabench.io import atomic_write_json
    from strabench.registry import list_models

    table = {name: compute_entry(name) for name in list_models()}
    if args.write:
        atomic_write_json(CACHE_PATH, table)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()

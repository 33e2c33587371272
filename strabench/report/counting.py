"""What a group counts: one run per seed, and whether its networks learned.

``dedupe_seeds`` keeps one run folder per seed of a setting (a copied ``*.bak`` folder, or a run
re-measured under another hash, must not narrow an interval) and names the others;
``did_not_learn`` says whether a group's trained score is at or below its untrained one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["STATUS_RANK", "dedupe_seeds", "did_not_learn"]

STATUS_RANK = {"finished": 3, "failed": 2, "partial": 1, "pending": 0}


def _seed(row: dict[str, Any]) -> int | None:
    seed = row.get("seed")
    return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None


def _canonical(row: dict[str, Any]) -> bool:
    """Whether the run's folder has the name its identity gives it (a copy or rename has not)."""
    return row.get("run_id") == f"{row.get('variant')}-s{row.get('seed')}-{row.get('hash')}"


def dedupe_seeds(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One run per seed of a group: the folder named as its identity says, else the most
    advanced status, else the first by name; the others are named in the returned notes."""
    by_seed: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_seed.setdefault(_seed(row), []).append(row)
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    for seed, candidates in by_seed.items():
        if seed is None or len(candidates) == 1:
            kept.extend(candidates)
            continue
        ranked = sorted(candidates, key=lambda r: (not _canonical(r), -STATUS_RANK.get(r["status"], 0), str(r["run_id"])))
        keep, others = ranked[0], ranked[1:]
        kept.append(keep)
        differ = any(o["status"] == "finished" and keep["status"] == "finished" and o["metrics"] != keep["metrics"] for o in others)
        names = ", ".join(f"`{o['run_id']}`" for o in others)
        notes.append(
            f"`{keep['variant']}` seed {seed}: {len(others) + 1} run folders of one setting; counted once (`{keep['run_id']}`), "
            f"not {names}" + (" (their numbers differ!)" if differ else " (copies)")
        )
    return kept, notes


def did_not_learn(record: dict[str, Any], metric: str) -> bool:
    """The group's mean trained score is at or below the same networks' untrained score."""
    mean, untrained = record.get(f"{metric}_mean"), record.get(f"{metric}_untrained_mean")
    return mean is not None and untrained is not None and mean <= untrained

"""The report's warning for results from mixed code: a setting whose runs different code made.

Rows of one ``group`` (the same training configuration, every seed) are compared and averaged
as one setting. If their ``code`` cells differ (``strabench.provenance``: the strabench
sources, versions or kernels changed between runs), or a run mixed code itself (ids joined by
"+": resumed under other code with ``--allow-mixed``), the numbers may differ for reasons that
are not the seed, and the report says so in one line per group, naming the codes and counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = ["mixed_code_lines"]


def mixed_code_lines(rows: Iterable[dict[str, Any]]) -> list[str]:
    """One warning line per group of finished rows whose runs came from different code."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "finished" and row.get("group"):
            by_group.setdefault(str(row["group"]), []).append(row)
    lines = []
    for group, members in by_group.items():
        codes = Counter(str(r.get("code") or "unknown") for r in members)
        within = sorted(c for c in codes if "+" in c)
        if len(codes) < 2 and not within:
            continue
        variant = members[0].get("variant") or "?"
        counts = ", ".join(f"{code} ({n} run{'s' if n > 1 else ''})" for code, n in sorted(codes.items()))
        what = "runs made by different code" if len(codes) > 1 else "a run resumed under other code"
        lines.append(f"{variant} (group {group}): {what}: {counts}; its spread is not only the seeds' "
                     "(`strabench run ... --rerun-stale` retrains the runs other code made)")
    return lines

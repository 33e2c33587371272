"""A suite as one ranked table: each variant's score with its interval, its paired verdict against
each reference, and what it costs (params, GMACs per convention, latency ratios).

A suite asks for it with a ``[leaderboard]`` table (``rank_by``, ``versus``); ``strabench
report --rank-by METRIC`` asks for it for any suite. The order is by the mean over finished
seeds (higher first for a metric, lower first for a cost); it is not itself a result, which is
why every row carries its verdict against each reference beside it.

The verdicts are the project's paired comparisons (``strabench.report.tables.summarise``),
made once per reference with that reference as the baseline: each reference's comparisons form
their own family (Holm within it). ``compare_with`` is the one place this module asks for them.

Costs are read as the suite measured them: params and MACs per run (``measure.json``), latency
from the suite's interleaved timings (``latency.json``, ``latency-2.json`` ... one per batch
size). What a MAC convention left out of a variant (``uncounted`` in ``measure.json``: the
paper convention's attention products, anything a counter could not cost) is marked in its
cell and listed in the notes, never shown as if counted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError
from strabench.io import read_json_object
from strabench.report.tables import MAC_LABELS, SuiteResults, image_lines, summarise

__all__ = ["Leaderboard", "Timing", "build_leaderboard", "compare_with", "leaderboard_frame", "render_leaderboard", "wanted"]

#: Costs a board can be ranked by (lower first), besides the suite's metrics (higher first).
COSTS = ("params", *(f"macs_{c}" for c in MAC_LABELS), "latency")


@dataclass(frozen=True)
class Timing:
    """One of the suite's interleaved latency measurements (a ``latency*.json``)."""

    key: str  # "latency" for the first, "latency_b32" ... by batch for the others
    batch: int | None
    mode: str
    baseline: str | None
    variants: dict[str, dict[str, Any]]
    error: str | None = None

    @property
    def label(self) -> str:
        return f"b{self.batch}" if self.batch is not None else "?"


@dataclass
class Leaderboard:
    """The ranked rows (records of ``tables.summarise`` plus the columns below) and their notes."""

    suite: str
    rank_by: str | None
    higher_first: bool
    metric: str | None  # the score shown and compared (the ranking metric, else the suite's primary one)
    versus: list[str]
    timings: list[Timing]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def wanted(results: SuiteResults, rank_by: str | None = None, versus: Sequence[str] | None = None) -> bool:
    """Whether the report shows a leaderboard: the suite has a ``[leaderboard]`` table, or one is asked for."""
    return bool(rank_by or versus or isinstance(results.meta.get("leaderboard"), dict))


# --- the comparisons: the project's paired verdicts, once per reference ------------------------------


def compare_with(results: SuiteResults, reference: str) -> dict[tuple[str, Any], dict[str, Any]]:
    """Each group's records with its paired comparison against ``reference`` (``{metric}_verdict``,
    ``{metric}_diff``, ``{metric}_diff_ci_low`` ...), made by ``tables.summarise`` with
    ``reference`` as the suite's baseline; keyed by (variant, group)."""
    view = dataclasses.replace(results, meta={**results.meta, "baseline": reference})
    return {(r["variant"], r.get("group")): r for r in summarise(view, paper=False)}


# --- building -----------------------------------------------------------------------------------------


def build_leaderboard(results: SuiteResults, *, rank_by: str | None = None, versus: Sequence[str] | None = None) -> Leaderboard:
    """The ranked board of ``results``; ``rank_by``/``versus`` override the suite's ``[leaderboard]``."""
    settings = results.meta.get("leaderboard") if isinstance(results.meta.get("leaderboard"), dict) else {}
    metrics = results.metrics
    chosen = rank_by or settings.get("rank_by") or results.primary_metric or _default_cost(results)
    waiting = None
    if not rank_by and not metrics and chosen not in COSTS and not chosen.startswith("latency_b"):
        waiting, chosen = chosen, _default_cost(results)  # the suite's metric, before any run has finished
    if chosen not in metrics and chosen not in COSTS and not chosen.startswith("latency_b"):
        known = ", ".join([*metrics, *COSTS, "latency_bN"])
        raise ConfigError(f"--rank-by {chosen!r}: the suite {results.name} has no such metric or cost; choose from {known}")
    variants = list(dict.fromkeys(r["variant"] for r in results.rows))
    references = list(versus or settings.get("versus") or ([results.baseline] if results.baseline else []))
    for name in references:
        if name not in variants:
            raise ConfigError(f"--versus {name!r}: the suite {results.name} has no variant of that name; variants: {', '.join(variants)}")
    timings = read_timings(results)
    records = list(summarise(results, paper=False))
    by_reference = {name: compare_with(results, name) for name in references} if metrics else {}
    uncounted = _uncounted(results)
    for record in records:
        key = (record["variant"], record.get("group"))
        record["versus"] = {name: by_reference[name].get(key, {}) for name in by_reference}
        record["block"] = _block(record)
        record["uncounted"] = uncounted.get(record["variant"], {})
        for timing in timings:
            timed = timing.variants.get(record["variant"]) or {}
            ratios = [r for r in timed.get("ratio_rounds") or [] if isinstance(r, (int, float)) and math.isfinite(r)]
            record[timing.key] = _finite(timed.get("ratio_to_baseline"))
            record[f"{timing.key}_range"] = (min(ratios), max(ratios)) if ratios else None
            record[f"{timing.key}_noisy"] = bool(timed.get("noisy"))
            # the same variant with every block in torch ops (``--kernels stock``), where that is other code
            stock = timed.get("stock_implementation")
            separate = isinstance(stock, str) and stock != timed.get("implementation")
            stock_ratios = [r for r in timed.get("stock_ratio_rounds") or [] if isinstance(r, (int, float)) and math.isfinite(r)]
            record[f"{timing.key}_stock"] = _finite(timed.get("stock_ratio_to_baseline")) if separate else None
            record[f"{timing.key}_stock_range"] = (min(stock_ratios), max(stock_ratios)) if separate and stock_ratios else None
            # files written before the stock flag was kept: the fused row's flag (same baseline, same run)
            record[f"{timing.key}_stock_noisy"] = bool(timed.get("stock_noisy", timed.get("noisy"))) if separate else False
    higher_first = chosen in metrics
    ranked = _rank(records, chosen, higher_first)
    board = Leaderboard(results.name, chosen, higher_first, chosen if higher_first else results.primary_metric, references,
                        timings, ranked)
    board.notes = _notes(results, board)
    if waiting:
        board.notes.insert(0, f"No run has finished with {waiting} yet: ranked by {chosen} until one has.")
    return board


def _default_cost(results: SuiteResults) -> str:
    """A suite without metrics ranks by what it counted: fvcore MACs (every op), else paper MACs, else params."""
    for key in ("macs_fvcore", "macs_ptflops", "macs_paper", "params"):
        if any(r.get(key) is not None for r in results.rows):
            return key
    return "params"


def read_timings(results: SuiteResults) -> list[Timing]:
    """The suite's latency measurements in order (``latency.json``, ``latency-2.json`` ...)."""
    from strabench.suite.runner import latency_file

    found = []
    for index in range(16):
        data = results.latency if index == 0 else read_json_object(results.directory / latency_file(index))
        if not isinstance(data, dict):
            if index == 0:
                continue
            break
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        batch = settings.get("batch") if isinstance(settings.get("batch"), int) else None
        variants = data.get("variants") if isinstance(data.get("variants"), dict) else {}
        error = data.get("error") if isinstance(data.get("error"), str) else None
        found.append(Timing("", batch, str(settings.get("mode") or "infer"), data.get("baseline") or settings.get("baseline"),
                            {str(k): v for k, v in variants.items() if isinstance(v, dict)}, error))
    return [dataclasses.replace(t, key="latency" if i == 0 else f"latency_b{t.batch}") for i, t in enumerate(found)]


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _block(record: dict[str, Any]) -> str:
    """What the variant puts where: its replace blocks, else the registered model's block."""
    import json

    from strabench.errors import StrabenchError
    from strabench.registry import model_info

    try:
        overrides = json.loads(record.get("overrides") or "{}")
    except ValueError:
        overrides = {}
    replace = overrides.get("replace") if isinstance(overrides, dict) else None
    if isinstance(replace, dict) and replace:
        return "; ".join(f"{pattern}={block}" for pattern, block in replace.items())
    try:
        return model_info(record["model"]).block
    except StrabenchError:
        return record["model"]


def _uncounted(results: SuiteResults) -> dict[str, dict[str, list[str]]]:
    """Per variant and convention, what the MAC counters left out (from the runs' measure.json);
    a variant whose counts came without a readable list gets ``{"?": [run ids]}``."""
    from strabench.io import as_dict, as_text
    from strabench.suite.store import MEASURE_JSON

    out: dict[str, dict[str, list[str]]] = {}
    for row in results.rows:
        if row.get("status") != "finished" or not row.get("run_id"):
            continue
        measured = read_json_object(results.directory / str(row["run_id"]) / MEASURE_JSON)
        if measured is None or not isinstance(measured.get("uncounted"), dict):
            if any(row.get(f"macs_{c}") is not None for c in MAC_LABELS):
                out.setdefault(row["variant"], {}).setdefault("?", []).append(str(row["run_id"]))
            continue
        for convention, items in as_dict(measured.get("uncounted")).items():
            if isinstance(items, list) and items:
                names = [t for t in (as_text(i) for i in items) if t]
                out.setdefault(row["variant"], {})[as_text(convention) or "?"] = names
    return out


def _sort_value(record: dict[str, Any], key: str) -> float | None:
    if key.startswith("latency"):
        return record.get(key)
    if key in COSTS:
        return record.get(key)
    return record.get(f"{key}_mean")


def _rank(records: list[dict[str, Any]], key: str, higher_first: bool) -> list[dict[str, Any]]:
    """Records ordered by ``key`` (ties share a rank); those without a value last, unranked."""
    valued = [r for r in records if _sort_value(r, key) is not None]
    rest = [r for r in records if _sort_value(r, key) is None]
    valued.sort(key=lambda r: _sort_value(r, key), reverse=higher_first)  # type: ignore[arg-type, return-value]
    previous, rank = None, 0
    for index, record in enumerate(valued, start=1):
        value = _sort_value(record, key)
        if value != previous:
            rank, previous = index, value
        record["rank"] = rank
    for record in rest:
        record["rank"] = None
    return valued + rest


# --- rendering ----------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _state(record: dict[str, Any]) -> str:
    if record.get("finished"):
        return "—"
    return "failed" if record.get("failed") else "pending"


def _score_cell(record: dict[str, Any], metric: str) -> str:
    mean = record.get(f"{metric}_mean")
    if mean is None:
        return _state(record)
    low, high = record.get(f"{metric}_ci_low"), record.get(f"{metric}_ci_high")
    n = record.get(f"{metric}_n") or 0
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else " (1 seed: no interval)"
    return f"{mean:.2f}{interval} n={n}"


def verdict_cell(record: dict[str, Any], metric: str, reference: str) -> str:
    """``better +1.20 [+0.31, +2.09]``: the comparison's verdict, the mean paired difference and its interval."""
    if record["variant"] == reference:
        return "(reference)"
    compared = record.get("versus", {}).get(reference) or {}
    verdict = compared.get(f"{metric}_verdict")
    if verdict is None:
        return "no paired seeds" if record.get(f"{metric}_mean") is not None else _state(record)
    diff = compared.get(f"{metric}_diff")
    low, high = compared.get(f"{metric}_diff_ci_low"), compared.get(f"{metric}_diff_ci_high")
    shown = _fmt(diff, 2, True)
    if low is not None and high is not None:
        shown += f" [{_fmt(low, 2, True)}, {_fmt(high, 2, True)}]"
    return f"{verdict} {shown}"


def _macs_cell(record: dict[str, Any], convention: str) -> str:
    value = record.get(f"macs_{convention}")
    if value is None:
        return _state(record)
    return f"{value / 1e9:.3f}" + (" †" if record["uncounted"].get(convention) else "")


def _latency_cell(record: dict[str, Any], key: str) -> str:
    ratio = record.get(key)
    if ratio is None:
        return "same code" if key.endswith("_stock") and record.get(key[: -len("_stock")]) is not None else "—"
    text = f"{ratio:.3f}×"
    spread = record.get(f"{key}_range")
    if spread and spread[1] > spread[0]:
        text += f" ({spread[0]:.2f}–{spread[1]:.2f})"
    return text + (" NOISY" if record.get(f"{key}_noisy") else "")


def columns(board: Leaderboard) -> list[tuple[str, Any]]:
    """(header, cell) pairs of the board: the one place its columns and their order live."""
    rows = board.rows
    out: list[tuple[str, Any]] = [
        ("#", lambda r: "—" if r["rank"] is None else str(r["rank"])),
        ("variant", lambda r: r["variant"]),
        ("block", lambda r: f"`{r['block']}`"),
    ]
    metric = board.metric
    if metric:
        out.append((f"{metric} (%) [95% CI]", lambda r: _score_cell(r, metric)))
        for reference in board.versus:
            out.append((f"vs {reference}: Δ {metric} [95% CI]", lambda r, ref=reference: verdict_cell(r, metric, ref)))
    if any(r.get("params") is not None for r in rows):
        out.append(("params (M)", lambda r: _fmt(r["params"] / 1e6, 2) if r.get("params") is not None else _state(r)))
    for convention, label in MAC_LABELS.items():
        if any(r.get(f"macs_{convention}") is not None for r in rows):
            out.append((f"GMACs ({label})", lambda r, c=convention: _macs_cell(r, c)))
    for timing in board.timings:
        if timing.error is None and timing.baseline:
            out.append((f"latency ×{timing.baseline} ({timing.label})", lambda r, k=timing.key: _latency_cell(r, k)))
            if any(r.get(f"{timing.key}_stock") is not None for r in rows):
                out.append((f"latency ×{timing.baseline} ({timing.label}, torch ops)",
                            lambda r, k=f"{timing.key}_stock": _latency_cell(r, k)))
    return out


def leaderboard_frame(board: Leaderboard):
    """The board as a pandas DataFrame of display strings."""
    import pandas as pd

    cols = columns(board)
    return pd.DataFrame([[cell(r) for _, cell in cols] for r in board.rows], columns=[h for h, _ in cols])


def _notes(results: SuiteResults, board: Leaderboard) -> list[str]:
    notes = []
    key = board.rank_by
    if board.higher_first:
        notes.append(
            f"Ranked by mean {key} over each variant's finished seeds, higher first ({key} in %, with a 95 % Student-t "
            "interval over seeds). The order is not itself a result: neighbours whose intervals overlap may not differ; "
            "the verdict columns say which differences the seeds support.")
    else:
        what = {"params": "parameters"}.get(key or "", f"{key}")
        trained = "" if board.metric else " (no accuracy in this suite: nothing was trained)"
        notes.append(f"Ranked by {what}, lowest first{trained}.")
    if board.versus and board.metric:
        notes.append(
            "Verdict columns: each variant against each reference, paired seed by seed in the same setting "
            "(the report's paired comparison; Δ = variant − reference, mean over paired seeds with its 95 % interval). "
            "Each reference's comparisons are corrected together (Holm) at family-wise alpha 0.05; the references are "
            "separate families, each controlled on its own.")
    conventions = [c for c in MAC_LABELS if any(r.get(f"macs_{c}") is not None for r in board.rows)]
    if conventions:
        inputs = sorted({r["input"] for r in board.rows if r.get("input")})
        notes.append(
            f"GMACs: multiply-accumulates for one image at {', '.join(inputs) or 'the measure input'}. 'paper conv.': conv and "
            "linear layers with biases only, the paper's convention (what it calls FLOPs): attention products, softmax and "
            "the like are outside it by definition. fvcore and ptflops count every op, attention included "
            "(docs/attention-zoo.md has the costs).")
    for convention in conventions:
        marked = {r["variant"]: r["uncounted"][convention] for r in board.rows if r["uncounted"].get(convention)}
        if marked:
            parts = "; ".join(f"{v}: {_by_class(items)}" for v, items in marked.items())
            why = ("multiply-adds outside conv and linear layers, which this convention does not count" if convention == "paper"
                   else "ops this counter could not cost")
            notes.append(f"† GMACs ({MAC_LABELS[convention]}) leave out {why}: {parts}.")
    unread = sorted(r["variant"] for r in board.rows if r["uncounted"].get("?"))
    if unread:
        notes.append(f"What the counters left out could not be read (no measure.json beside the results) for: "
                     f"{', '.join(unread)}; their GMACs may leave attention out unmarked.")
    for timing in board.timings:
        if timing.error:
            notes.append(f"Latency ({timing.label}): not measured: {timing.error}")
    if any(t.error is None and t.baseline for t in board.timings):
        batches = ", ".join(t.label for t in board.timings if t.error is None)
        notes.append(
            f"Latency ({batches}: batch size): CPU time per image over that of `{board.timings[0].baseline}` timed right "
            f"before and after it in one process, {board.timings[0].mode} mode, median over rounds (range over rounds in "
            "brackets). Milliseconds depend on the machine and its load; the ratios are what carries over. NOISY: the "
            "timing was unsteady (see the suite table's notes).")
    if any(r.get(f"{t.key}_stock") is not None for r in board.rows for t in board.timings):
        notes.append("'torch ops': the same variant with every block in plain torch ops (`--kernels stock`), timed in the "
                     "same run: the design comparison, since only some blocks have fused operators; the column before it "
                     "is as shipped. 'same code': the variant has no fused form.")
    if board.metric:
        notes.append("Pareto plots: each variant's score against its cost; vertical bars are its own 95 % interval over "
                     "seeds, so overlapping bars can still differ consistently seed by seed (the verdict columns test "
                     "the paired differences); the front joins the variants no other beats on both, on the means.")
    notes.append("What this table does and does not show (generated data, a CPU-sized recipe): docs/attention-zoo.md.")
    return notes


def _by_class(items: Sequence[str]) -> str:
    """``['layer4.0.conv2 (HaloAttn)', 'layer4.1.conv2 (HaloAttn)']`` -> ``HaloAttn x2`` (ops and
    class names without a module path are kept as they are)."""
    import re
    from collections import Counter

    names = Counter(match.group(1) if (match := re.fullmatch(r".* \((.+)\)", item)) else item for item in items)
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in names.items())


def render_leaderboard(board: Leaderboard, *, plots: dict[str, Path] | None = None, relative_to: Path | None = None) -> str:
    """The board's markdown section: heading, table, notes, plot links."""
    order = "higher first" if board.higher_first else "lowest first"
    parts = [f"## {board.suite}: leaderboard, ranked by {board.rank_by} ({order})", ""]
    if not board.rows:
        return "\n".join(parts + ["_No runs._", ""])
    parts += [leaderboard_frame(board).to_markdown(index=False, disable_numparse=True), ""]
    parts += [f"- {line}" for line in board.notes]
    parts += image_lines(plots, relative_to)
    return "\n".join(parts)

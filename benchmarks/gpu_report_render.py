"""The markdown of `benchmarks/gpu_report.py`: made only from the raw JSON it writes next to it.

Kept apart from the driver so a report can be re-rendered from its JSON without re-running
anything (``python benchmarks/gpu_report_render.py results/bench/nvidia-h200.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

PRECISION_LABELS = {"fp32": "fp32", "bf16+channels_last": "bf16+CL"}
MODE_TITLES = {"infer": "Inference (eval, inference_mode)", "train": "Train step (forward, CE + aux losses, backward, SGD)"}
LA_LAYERS = ("local_attention_fast", "local_attention_unfold", "conv3x3")
LA_MODES = ("fwd", "fwd+bwd", "fwd_eval")


def num(value: Any) -> str:
    """3 decimals below 10, else 1 decimal with thousands separators; a dash when missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> list[str]:
    right = right or [i > 0 for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(num(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def _steps(report: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in report["steps"] if s["kind"] == kind}


def _missing(step: dict[str, Any] | None) -> str:
    if step is None:
        return "not run"
    return f"{step['status']}: {step.get('error', '')}".rstrip(": ")


def title_lines(report: dict[str, Any]) -> list[str]:
    env, sizes = report["environment"], report["profile"]
    profile = sizes["name"]
    device = env["device_name"]
    if profile == "smoke":
        return [f"# Smoke run of `benchmarks/gpu.sh` on {device} ({report['device']})", "",
                f"Tiny sizes ({len(sizes['models'])} models, batch {sizes['batch']}, {sizes['rounds']} round(s)): it checks that every step runs and every section "
                "renders. **The numbers mean nothing.**", ""]
    if report["device"] == "cpu":
        return [f"# CPU dry run of `benchmarks/gpu.sh`: {device} — not a GPU result", "",
                f"The GPU report's steps with CPU sizes (bench batch {sizes['batch']}, {sizes['rounds']} round(s) of "
                f"{sizes['min_run_time']} s measurements, bf16 autocast on CPU, a short training on a reduced synthetic "
                "set), run to prove the script works end to end "
                f"before a GPU is available. Timings are short measurements on {env['cpu_count']} "
                f"cores (1-minute load average {env['loadavg_1m']} before the run, niceness {env['niceness']}): they "
                "show that every step runs, not how fast anything is; `results/bench/cpu.md` has careful CPU numbers.", ""]
    return [f"# strabench on {device}: ReID ResNet-50 variants, LocalAttention, AMP training", ""]


def header_lines(report: dict[str, Any]) -> list[str]:
    env = report["environment"]
    rows: list[tuple[str, str]] = []
    if report["device"] == "cuda":
        rows += [
            ("GPU", f"{env['device_name']}, {env['gpu_memory_gib']} GiB, compute capability {env['compute_capability']}, "
                    f"{env['multiprocessors']} SMs ({env['gpu_count']} visible, device 0 used)"),
            ("driver / CUDA / cuDNN", f"{env.get('driver') or 'unknown (no nvidia-smi)'} / {env['cuda']} / {env['cudnn']}"),
        ]
    else:
        rows.append(("device", f"cpu: {env['device_name']} (no GPU)"))
    dirty = {True: "uncommitted changes", False: "clean", None: "unknown"}[env.get("git_dirty")]
    rows += [
        ("torch / python", f"{env['torch']} / {env['python']}"),
        ("host", f"{env['cpu']}, {env['cpu_count']} cores, {env['ram_gib']} GiB RAM; {env['platform']}"),
        ("load before / niceness", f"{env['loadavg_1m']} (1-min load average) / {env['niceness']}"),
        ("commit", f"`{env.get('git_commit') or 'not a git checkout'}` ({dirty}), strabench {env['strabench']}"),
        ("date (UTC)", f"{report['started_utc']} to {report['finished_utc']}"),
        ("wall time", f"{report['total_s']:.1f} s in all (budget {report['budget_s']:.0f} s)"),
        ("command", f"`{report['invocation']}`"),
    ]
    label = "GPU" if report["device"] == "cuda" else "Machine"
    return [f"## {label}", "", *table(("", ""), rows, right=(False, False)), ""]


def steps_lines(report: dict[str, Any]) -> list[str]:
    rows = [(str(i), s["title"], s["status"] if s["status"] == "ok" else f"**{s['status']}**", f"{s['elapsed_s']:.1f}",
             s.get("error") or "")
            for i, s in enumerate(report["steps"], 1)]
    return ["## Steps", "", *table(("#", "step", "status", "seconds", "note"), rows, right=(True, False, False, True, False)), ""]


def _ms(row: dict[str, Any]) -> str:
    return f"{num(row['median_ms'])} ({num(row['iqr_ms'])})"


def bench_lines(report: dict[str, Any]) -> list[str]:
    steps = _steps(report, "bench")
    lines = ["## ReID ResNet-50 variants vs resnet50 (`strabench bench`)", ""]
    first = next((s["result"][0] for s in steps.values() if s["status"] == "ok" and s.get("result")), None)
    if first is not None:
        lines += [
            f"Batch {first['batch']}, input {first['input']}, {first['rounds']} round(s), {first['min_run_time']} s per "
            f"measurement, {first['threads']} CPU threads. Ratio = per-image time / resnet50's measured just before and "
            "after it in the same run (median over rounds; each precision has its own resnet50). ms cells: median (IQR) "
            f"of one step. Peak MB: {first['mem_method']}. bf16+CL = `--amp bf16 --channels-last`; speed-up = bf16+CL "
            "img/s / fp32 img/s of the same model.",
            "",
        ]
    for mode in ("infer", "train"):
        runs = {p: steps.get(f"bench-{mode}-{p}") for p in PRECISION_LABELS}
        lines += [f"### {MODE_TITLES[mode]}", ""]
        for precision, step in runs.items():
            if step is None or step["status"] != "ok":
                lines += [f"**{PRECISION_LABELS[precision]} not measured** ({_missing(step)}).", ""]
        rows_by = {p: {r["model"]: r for r in s["result"]} for p, s in runs.items() if s and s["status"] == "ok"}
        if not rows_by:
            continue
        models = list(dict.fromkeys(m for rows in rows_by.values() for m in rows))
        header = ["model"]
        for precision in rows_by:
            short = PRECISION_LABELS[precision]
            header += [f"{short} ms", f"{short} img/s", f"{short} ratio", f"{short} peak MB"]
        both = len(rows_by) == len(PRECISION_LABELS)
        if both:
            header.append("bf16+CL speed-up")
        body = []
        for model in models:
            cells: list[Any] = [model]
            for rows in rows_by.values():
                row = rows.get(model)
                cells += [_ms(row), row["images_per_s"], row["ratio_to_baseline"], row["peak_mem_mb"]] if row else ["—"] * 4
            if both:
                fp32, amp = (rows_by[p].get(model) for p in PRECISION_LABELS)
                cells.append(f"{amp['images_per_s'] / fp32['images_per_s']:.2f}×" if fp32 and amp else "—")
            body.append(cells)
        lines += table(header, body, right=[False] + [True] * (len(header) - 1)) + [""]
        for precision, rows in rows_by.items():
            for row in rows.values():
                if row.get("noisy") or row.get("note"):
                    what = "; ".join(x for x in (row.get("noise"), row.get("note")) if x)
                    lines.append(f"- {PRECISION_LABELS[precision]} {row['model']}: {what}")
        lines.append("")
    return lines


def local_attention_lines(report: dict[str, Any]) -> list[str]:
    steps = _steps(report, "local_attention")
    lines = ["## LocalAttention block vs the 3x3 conv it replaces (`benchmarks/local_attention.py`)", ""]
    done = {p: steps.get(f"local-attention-{p}") for p in PRECISION_LABELS}
    for precision, step in done.items():
        if step is None or step["status"] != "ok":
            lines += [f"**{PRECISION_LABELS[precision]} not measured** ({_missing(step)}).", ""]
    results = {p: s["result"] for p, s in done.items() if s and s["status"] == "ok"}
    if not results:
        return lines
    c = next(iter(results.values()))["config"]
    lines += [
        f"C={c['channels']}, {c['height']}x{c['width']}, batch {c['batch']}, {c['groups']} groups, 3x3 window; "
        "fwd: train mode under no_grad; fwd+bwd: gradients w.r.t. input and parameters; fwd_eval: eval mode. "
        "Median ms (IQR).",
        "",
    ]
    labels = [PRECISION_LABELS[p] for p in results]
    times = {p: {(r["name"], r["mode"]): r for r in res["results"]} for p, res in results.items()}
    body = []
    for layer in LA_LAYERS:
        for mode in LA_MODES:
            cells: list[Any] = [layer, mode]
            for p in results:
                r = times[p].get((layer, mode))
                cells.append(_ms(r) if r else "—")
            body.append(cells)
    lines += table(["layer", "mode", *(f"{label} ms" for label in labels)], body, right=[False, False] + [True] * len(labels))
    keys = list(next(iter(results.values()))["ratios"])
    ratio_rows = [[key, *(res["ratios"].get(key) for res in results.values())] for key in keys]
    lines += ["", *table(["ratio (medians)", *labels], ratio_rows), ""]
    return lines


def train_lines(report: dict[str, Any]) -> list[str]:
    step = next((s for s in report["steps"] if s["kind"] == "train"), None)
    lines = ["## Training: resnet50_stra, quick profile, AMP bf16 (`strabench train`)", ""]
    if step is None or step["status"] != "ok":
        lines += [f"**Not completed** ({_missing(step)}).", ""]
        if step is None:
            return lines
    result = step.get("result") or {}
    peak = step.get("peak_memory") or {}
    epochs = step.get("epochs") or []
    rates = ", ".join(f"{e['images_per_s']:,.0f}" for e in epochs if "images_per_s" in e) or "—"
    if "cuda_max_allocated_mb" in peak:
        memory = (f"{num(peak['cuda_max_allocated_mb'])} MB CUDA max_memory_allocated "
                  f"({num(peak['cuda_max_reserved_mb'])} MB reserved); host peak RSS {num(peak['max_rss_mb'])} MB")
    elif peak:
        memory = f"{num(peak['max_rss_mb'])} MB peak RSS of the training process (torch's own footprint included)"
    else:
        memory = "—"
    metrics = result.get("metrics") or {}
    untrained = result.get("metrics_untrained") or {}
    shown = ", ".join(f"{k} {num(v)} (untrained {num(untrained.get(k))})" for k, v in metrics.items()) or "—"
    rows = [
        ("process wall time", f"{step['elapsed_s']:.1f} s (start-up, data, untrained + final evaluation included)"),
        ("training time", f"{num(result.get('train_time_s'))} s over {result.get('epochs', '—')} epoch(s), "
                          f"{result.get('train_images', '—')} training images, input {'x'.join(map(str, result.get('input_size') or [])) or '—'}"),
        ("img/s per epoch", rates + " (the first epoch includes warm-up)"),
        ("peak memory", memory),
        ("amp / device", f"{result.get('amp', '—')} / {result.get('device', '—')}"),
        ("final loss", num(result.get("final_loss"))),
        ("test metrics", shown),
    ]
    return lines + table(("", ""), rows, right=(False, False)) + [""]


def commands_lines(report: dict[str, Any], raw_name: str) -> list[str]:
    lines = ["## Commands", "", "Each step, as run (from the repository root, in this order):", "", "```"]
    lines += [s["command"] for s in report["steps"]]
    lines += ["```", "",
              "The training step runs `strabench train` inside a Python process that then reads its peak memory "
              "(`benchmarks/gpu_report.py`); RUN_DIR is a temporary folder, deleted afterwards.",
              "", f"Raw step outputs: `{raw_name}` (same folder).", ""]
    return lines


def render(report: dict[str, Any], raw_name: str) -> str:
    """The whole report; every number comes from ``report`` (the JSON written next to it)."""
    parts = [title_lines(report), header_lines(report), steps_lines(report), bench_lines(report),
             local_attention_lines(report), train_lines(report), commands_lines(report, raw_name)]
    return "\n".join(line for part in parts for line in part).rstrip() + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1])
    sys.stdout.write(render(json.loads(source.read_text()), source.name))

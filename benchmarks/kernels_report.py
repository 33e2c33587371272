"""Design against engineering: the Table 1/3/4 models with every block in plain torch ops (stock)
and with StRA's ``strabench::`` operators (fused), timed in one interleaved run per setting.

Each setting is one ``strabench bench --kernels both`` run (``benchmark_models(kernels="both")``):
the baseline, then every candidate fused and its stock twin, interleaved (B c1 B c1' B c2 ...),
rounds chained. The stock ratio is the design comparison (no block hand-fused: StRA and SASA
both in torch ops); the fused ratio is what a user gets (StRA on its operators, SASA on one
masked ``scaled_dot_product_attention`` call). Every row names what its blocks ran.

    python benchmarks/kernels_report.py run [--only KEY ...] [--out-dir results/bench/kernels] [--overwrite]
    python benchmarks/kernels_report.py report [--out-dir results/bench/kernels] [--out results/bench/kernels.md]

``run`` writes one JSON per setting (its rows, the machine, the commit and the command) and skips
settings already written, so an interrupted run resumes; ``report`` renders the markdown from
those files alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from strabench.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
#: Table 1 (the paper's attention blocks) and Table 3 (StRA's ablations), ReID at 256x128.
REID = (
    "resnet50_se", "resnet50_nl", "resnet50_sasa", "resnet50_sasa_mode", "resnet50_conv_mode",
    "resnet50_gconv_mode", "resnet50_local", "resnet50_local_mode", "resnet50_stra",
)
#: The train step is ~3x an inference batch: the variants whose blocks have a fused form.
REID_TRAIN = ("resnet50_sasa", "resnet50_local", "resnet50_local_mode", "resnet50_stra")
SETTINGS = {
    # a batch-32 step takes seconds, so each round times it once: five rounds give five samples
    "reid-infer-b32": dict(models=REID, baseline="resnet50", mode="infer", batch=32, rounds=5, min_run_time=1.0),
    "reid-infer-b1": dict(models=REID, baseline="resnet50", mode="infer", batch=1, rounds=7, min_run_time=0.5),
    "reid-train-b32": dict(models=REID_TRAIN, baseline="resnet50", mode="train", batch=32, rounds=5, min_run_time=1.0),
    # Table 1: MobileNetV2 +- StRA, each against its own width
    "mnv2_100-infer-b32": dict(models=("mobilenetv2_100_stra",), baseline="mobilenetv2_100", mode="infer", batch=32,
                               rounds=5, min_run_time=0.5),
    "mnv2_140-infer-b32": dict(models=("mobilenetv2_140_stra",), baseline="mobilenetv2_140", mode="infer", batch=32,
                               rounds=5, min_run_time=0.5),
}
#: resnet50_stra / resnet50 must not regress past these (fused, measured in one run).
TARGETS = {"reid-infer-b32": 0.85, "reid-train-b32": 0.88, "reid-infer-b1": 0.88}
STOCK = " (stock)"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def run(args: argparse.Namespace) -> dict:
    from strabench.env import configure_process, describe_environment, git_commit
    from strabench.measure.latency import benchmark_models

    configure_process(calm_threads=False)  # as `strabench bench` does: freed memory kept on the heap

    out_dir = Path(args.out_dir)
    done = {}
    for key, setting in SETTINGS.items():
        if args.only and key not in args.only:
            continue
        path = out_dir / f"{key}.json"
        if path.exists() and not args.overwrite:
            print(f"{key}: {path} exists, kept (--overwrite to measure again)", file=sys.stderr)
            continue
        print(f"{key}: {len(setting['models'])} model(s) and their stock twins against {setting['baseline']}",
              file=sys.stderr, flush=True)
        params = {k: v for k, v in setting.items() if k != "models"}
        rows = benchmark_models(list(setting["models"]), input_size=None, kernels="both", threads=args.threads,
                                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True), **params)
        info = describe_environment()
        _write_json(path, {
            "setting": key, **params, "models": list(setting["models"]), "kernels": "both",
            "machine": {k: info.get(k) for k in ("cpu", "cpu_count", "platform", "python", "torch", "allocator")},
            "git_commit": git_commit(REPO),
            "command": shlex.join(["python", "benchmarks/kernels_report.py", *sys.argv[1:]]),
            "rows": rows,
        })
        done[key] = str(path)
    return {"written": done}


# --- report -----------------------------------------------------------------------------------


def _ratio(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _rounds(values) -> str:
    return "—" if not values else " ".join(f"{v:.2f}" for v in values)


def _cell(text: str) -> str:
    """A markdown table cell: an implementation names its blocks' operators, "a | b" per kind."""
    return text.replace("|", "\\|")


def _table(data: dict) -> list[str]:
    rows = {r["model"]: r for r in data["rows"]}
    lines = [
        "| model | fused: blocks ran as | fused ratio | per round | stock ratio | per round | noisy |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for name in (data["baseline"], *data["models"]):
        row = rows[name]
        twin = rows.get(name + STOCK)
        noisy = ", ".join(label for label, r in (("fused", row), ("stock", twin)) if r is not None and r.get("noisy")) or "no"
        if name == data["baseline"]:
            lines.append(f"| {name} (baseline) | {_cell(row['implementation']) or 'no attention block'} | 1 | — | 1 | — | {noisy} |")
            continue
        lines.append(
            f"| {name} | {_cell(row['implementation']) or 'no fusible block (torch ops either way)'} | "
            f"{_ratio(row['ratio_to_baseline'])} | {_rounds(row['ratio_rounds'])} | "
            f"{_ratio(twin['ratio_to_baseline']) if twin else 'same code'} | {_rounds(twin['ratio_rounds']) if twin else '—'} | "
            f"{noisy} |")
    return lines


def _design_lines(data: dict) -> list[str]:
    """StRA against SASA (the other local-attention design) stock against stock and as shipped."""
    rows = {r["model"]: r for r in data["rows"]}
    pairs = [("resnet50_stra", "resnet50_sasa"), ("resnet50_local", "resnet50_sasa"),
             ("resnet50_local_mode", "resnet50_sasa_mode")]
    out = []
    for ours, rival in pairs:
        if ours in rows and rival in rows and ours + STOCK in rows and rival + STOCK in rows:
            stock = rows[ours + STOCK]["ratio_to_baseline"] / rows[rival + STOCK]["ratio_to_baseline"]
            fused = rows[ours]["ratio_to_baseline"] / rows[rival]["ratio_to_baseline"]
            best = (min(rows[ours]["ratio_to_baseline"], rows[ours + STOCK]["ratio_to_baseline"])
                    / min(rows[rival]["ratio_to_baseline"], rows[rival + STOCK]["ratio_to_baseline"]))
            out.append(f"- {ours} / {rival}: **{stock:.3f}×** with both in torch ops (the designs), "
                       f"{fused:.3f}× as shipped (each on its engineered implementation), "
                       f"{best:.3f}× each on its faster implementation here.")
    return out


#: The layer4 train step's ops by what they do (the profiler's op names; first match wins).
#: ``aten::bmm``, softmax and sigmoid in layer4 come from mode attention alone: ResNet-50's layer4
#: has none, and local attention runs as ``strabench::`` operators.
PARTS = (
    ("convolutions (forward and backward)", ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                                             "aten::convolution", "aten::conv2d")),
    ("local attention's `strabench::` operators (grouped 1×1 convs, weighting) and their autograd",
     ("strabench::", "GeneratedBackwardFor_strabench")),
    ("mode attention's batched matmuls, softmax and sigmoid", ("aten::bmm", "aten::_softmax", "aten::_softmax_backward_data",
                                                               "aten::sigmoid", "aten::sigmoid_backward")),
    ("batch norm (forward and backward)", ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                                           "aten::_batch_norm_impl_index", "aten::batch_norm")),
)


def _part(op: str) -> str:
    for label, prefixes in PARTS:
        if op.startswith(prefixes):
            return label
    return "everything else (element-wise, copies, autograd bookkeeping)"


def composition(profile: dict, model: str = "resnet50_stra", baseline: str = "resnet50", mode: str = "train") -> list[str]:
    """What a layer4 step is made of, from ``bench_models.py profile``'s JSON: ms per part for the
    model and its baseline, and what each part adds to the model / baseline ratio."""
    models = profile["profile"]["models"]
    steps = {name: models[name][mode] for name in (model, baseline)}
    base_total = steps[baseline]["layer4_ms_per_step"]
    parts: dict[str, dict[str, float]] = {}
    for name, step in steps.items():
        listed = 0.0
        for op in step["top_ops"]:
            parts.setdefault(_part(op["op"]), {}).setdefault(name, 0.0)
            parts[_part(op["op"])][name] += op["self_ms_per_step"]
            listed += op["self_ms_per_step"]
        rest = step["layer4_ms_per_step"] - listed  # ops outside the listed top ones
        parts.setdefault("ops outside the profile's top list", {})[name] = max(rest, 0.0)
    order = [label for label, _ in PARTS] + ["everything else (element-wise, copies, autograd bookkeeping)",
                                             "ops outside the profile's top list"]
    lines = [f"| part of layer4's {mode} step | {model} ms | {baseline} ms | adds to the ratio |", "|---|---:|---:|---:|"]
    for label in order:
        if label not in parts:
            continue
        ours, theirs = parts[label].get(model, 0.0), parts[label].get(baseline, 0.0)
        lines.append(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / base_total:.3f} |")
    total = steps[model]["layer4_ms_per_step"]
    lines.append(f"| **layer4 {mode} step** | **{total:.1f}** | **{base_total:.1f}** | **{total / base_total:.3f}** |")
    return lines


def report(args: argparse.Namespace) -> dict:
    out_dir = Path(args.out_dir)
    found = {key: json.loads((out_dir / f"{key}.json").read_text()) for key in SETTINGS if (out_dir / f"{key}.json").exists()}
    if not found:
        raise SystemExit(f"{out_dir}: no setting measured yet (run `python benchmarks/kernels_report.py run` first)")
    first = next(iter(found.values()))
    machine = first["machine"]
    lines = [
        "# Stock against fused: every block in torch ops, and on StRA's operators",
        "",
        f"- Machine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']}, fp32, "
        f"allocator {machine['allocator']}",
        "- One interleaved run per setting (`strabench bench --kernels both`): the baseline, then each candidate "
        "fused and its stock twin, each between two baseline measurements; ratio = per-image time over the "
        "mean of those two, median over rounds. Stock: every block in plain torch ops, no block hand-fused "
        "(the design comparison). Fused: as shipped (StRA on its `strabench::` operators, fused for inference "
        "in eval mode; SASA on one masked `scaled_dot_product_attention` call).",
        "- Made by `python benchmarks/kernels_report.py run`, then `report` (each JSON has its commit and command).",
        "",
    ]
    summary = {}
    for key, data in found.items():
        lines += [
            f"## {key}: {data['mode']}, batch {data['batch']}, {data['rounds']} rounds, against {data['baseline']}",
            "",
            f"Commit {data['git_commit'] or 'unknown'}; min_run_time {data['min_run_time']} s; "
            f"{data['rows'][0]['threads']} threads; input {data['rows'][0]['input']}; {data['rows'][0]['timestamp'][:16]} UTC.",
            "",
            *_table(data),
            "",
        ]
        design = _design_lines(data)
        if design:
            lines += ["StRA against SASA (ratio of their ratios to the baseline):", "", *design, ""]
        if key in TARGETS:
            stra = next(r for r in data["rows"] if r["model"] == "resnet50_stra")
            ratio, target = stra["ratio_to_baseline"], TARGETS[key]
            verdict = "met" if ratio <= target else f"missed by {ratio - target:+.3f}"
            summary[key] = {"ratio": ratio, "stock_ratio": stra.get("stock_ratio_to_baseline"), "target": target,
                            "met": ratio <= target}
            lines += [f"**resnet50_stra / resnet50, fused: {ratio:.3f}× (target ≤ {target:.2f}×: {verdict}); "
                      f"stock: {_ratio(stra.get('stock_ratio_to_baseline'))}×.**", ""]
    if args.profile:
        profile = json.loads(Path(args.profile).read_text())
        meta = profile["machine"]
        lines += [
            "## What the train step is made of",
            "",
            f"layer4 alone (where every StRA block sits), one training step at batch {profile['profile']['batch']} from "
            f"the same layer3 output, torch.profiler self time per op, median of {profile['profile']['repeat']} "
            f"repetitions (`{meta.get('command', 'bench_models.py profile')}`, commit {meta.get('git_commit') or 'unknown'}). "
            "'adds to the ratio': the part's ms over the baseline's whole step, so the column sums to the layer4 ratio.",
            "",
            *composition(profile),
            "",
        ]
    if args.notes and Path(args.notes).exists():
        lines += [Path(args.notes).read_text().rstrip(), ""]
    out = Path(args.out)
    atomic_write_text(out, "\n".join(lines))
    return {"written": str(out), "targets": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_run = sub.add_parser("run", help="measure the settings not yet written")
    p_run.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=None)
    p_run.add_argument("--out-dir", default="results/bench/kernels")
    p_run.add_argument("--threads", type=int, default=None)
    p_run.add_argument("--overwrite", action="store_true")
    p_rep = sub.add_parser("report", help="markdown from the settings' JSON files")
    p_rep.add_argument("--out-dir", default="results/bench/kernels")
    p_rep.add_argument("--out", default="results/bench/kernels.md")
    p_rep.add_argument("--profile", default=None, help="JSON of `bench_models.py profile`: the train step's parts")
    p_rep.add_argument("--notes", default=None, help="markdown appended at the end")
    args = parser.parse_args()
    result = {"run": run, "report": report}[args.action](args)
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

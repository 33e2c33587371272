"""Reproduce results/bench: the ReID ResNet-50 variants against resnet50, inference and train step.

Three sub-commands, each printing JSON:

    python benchmarks/bench_models.py run [--modes infer train] [--batch 32] [--rounds 3]
        [--min-run-time 1.0] [--threads N] [--csv results/bench/cpu.csv]
    python benchmarks/bench_models.py profile [--batch 32] [--repeat 5] [--top 12]
        torch.profiler over layer4 of resnet50 and resnet50_stra (infer and train), top ops
    python benchmarks/bench_models.py report results/bench/cpu.csv [more.csv ...] --out results/bench/cpu.md
        [--title T ...] [--profile profile.json] [--notes notes.md] [--cmd "..."]
        markdown tables from the CSVs (pandas), one per `strabench bench` run

``run`` calls ``strabench.measure.latency.benchmark_models``, the library behind
``strabench bench``, with the baseline interleaved with the candidates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

MODELS = (
    "resnet50",
    "resnet50_se",
    "resnet50_nl",
    "resnet50_sasa",
    "resnet50_sasa_mode",
    "resnet50_conv_mode",
    "resnet50_gconv_mode",
    "resnet50_local",
    "resnet50_local_mode",
    "resnet50_stra",
)
BASELINE = "resnet50"
TARGETS = {"infer": 0.90, "train": 0.95}  # resnet50_stra / resnet50, from the project brief


def _machine() -> dict:
    from strabench.env import describe_environment, git_commit

    info = describe_environment()
    keys = ("cpu", "cpu_count", "platform", "python", "torch", "allocator", "omp_wait_policy")
    return {key: info[key] for key in keys} | {
        "git_commit": git_commit(), "command": shlex.join(["python", "benchmarks/bench_models.py", *sys.argv[1:]]),
    }


def run(args: argparse.Namespace) -> dict:
    from strabench.measure.latency import append_csv, benchmark_models

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = {}
    for mode in args.modes:
        rows = benchmark_models(
            list(args.models),
            baseline=BASELINE,
            mode=mode,
            batch=args.batch,
            input_size=(256, 128),
            threads=args.threads,
            min_run_time=args.min_run_time,
            rounds=args.rounds,
            progress=progress,
        )
        if args.csv:
            append_csv(rows, args.csv)
        results[mode] = rows
    return {"machine": _machine(), "results": results}


def profile(args: argparse.Namespace) -> dict:
    """Where layer4's time goes: the same layer3 output through resnet50's and resnet50_stra's layer4.

    Each repetition profiles one step of every (model, mode), alternating the model order, and
    per op the median over repetitions is reported, so a burst of load on this shared machine
    does not land on one model only.
    """
    import copy
    import statistics

    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from strabench.env import configure_process
    from strabench.layers.kernels import fuse_for_inference
    from strabench.measure.report import build_for_input

    allocator = configure_process(calm_threads=False)["allocator"]  # as `strabench bench` does
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, 3, 256, 128).contiguous(memory_format=fmt)
    names = ("resnet50", "resnet50_stra")
    layers, inference, feats = {}, {}, {}
    for name in names:
        model = build_for_input(name, (256, 128)).to(memory_format=fmt)
        with torch.no_grad():
            feats[name] = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))))
        layers[name] = model.layer4
        # inference as `strabench bench --mode infer` runs it: each StRA block one operator call
        inference[name] = copy.deepcopy(model.layer4).eval()
        fuse_for_inference(inference[name])

    def step(name: str, mode: str) -> None:
        if mode == "infer":
            with torch.inference_mode():
                inference[name](feats[name])
        else:
            layers[name].train()(feats[name].clone().requires_grad_(True)).sum().backward()

    samples: dict = {(n, m): [] for n in names for m in ("infer", "train")}
    modules: dict = {n: [] for n in names}
    copies: dict = {}
    for rep in range(args.repeat + 1):  # repetition 0 is a warm-up
        for mode in ("infer", "train"):
            for name in names if rep % 2 == 0 else reversed(names):
                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    step(name, mode)
                if rep:
                    samples[name, mode].append({e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()})
                if rep == 1:  # which tensors get copied (layout conversions show up here), with shapes
                    copies[name, mode] = _copies(lambda n=name, m=mode: step(n, m))
            if mode == "infer" and rep:  # one more forward per model with its sub-modules labelled
                for name in names:
                    modules[name].append(_module_times(inference[name], lambda n=name: step(n, "infer")))
    report: dict = {"modules_infer": {
        name: {key: statistics.median(rep.get(key, 0.0) for rep in reps) for key in reps[0]} for name, reps in modules.items()
    }}
    report |= {"batch": args.batch, "input": "256x128", "threads": torch.get_num_threads(), "repeat": args.repeat,
               "memory_format": "channels_last" if args.channels_last else "contiguous",
               "allocator": allocator, "models": {}}
    for (name, mode), reps in samples.items():
        totals = [sum(t for t, _ in rep.values()) for rep in reps]
        ops = {key for rep in reps for key in rep}
        per_op = {key: statistics.median(rep.get(key, (0, 0))[0] for rep in reps) for key in ops}
        top = sorted(per_op, key=per_op.get, reverse=True)[: args.top]
        total = statistics.median(totals)
        report["models"].setdefault(name, {})[mode] = {
            "layer4_ms_per_step": total / 1e3,
            "layer4_ms_each_rep": [t / 1e3 for t in totals],
            "copies": copies[name, mode],
            "top_ops": [
                {
                    "op": key,
                    "self_ms_per_step": per_op[key] / 1e3,
                    "share": per_op[key] / total,
                    "calls_per_step": reps[0].get(key, (0, 0))[1],
                }
                for key in top
            ],
        }
    return {"machine": _machine(), "profile": report}


COPY_OPS = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy")


def _copies(run) -> list[dict]:
    """Every copy op of one step with its input shapes and calls (the profiler's own record).

    A layout conversion is a copy whose shape is an activation's; a gradient accumulation or a
    small attention map shows up here too, with its own shape.
    """
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    rows = [{"op": e.key, "shapes": str(e.input_shapes), "calls": e.count}
            for e in prof.key_averages(group_by_input_shape=True) if e.key in COPY_OPS and e.input_shapes and e.input_shapes[0]]
    return sorted(rows, key=lambda r: (r["op"], r["shapes"]))


def _module_times(layer4, run) -> dict[str, float]:
    """Inclusive forward ms of layer4's parts, summed over its blocks (``conv2.local`` ...).

    Each part's ``forward`` is wrapped in a ``record_function`` for the pass (an instance
    attribute, removed afterwards); what runs is the same as unwrapped (StRA's blocks run the same
    operators whatever observes them). Parts a fused block does not call (``conv2.local.value``)
    are not labelled.
    """
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    wanted = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample", "conv2.local", "conv2.mode")  # fmt: skip
    wrapped = []
    for path, module in layer4.named_modules():
        label = path.split(".", 1)[-1] if "." in path else ""
        if label not in wanted:
            continue

        def labelled(*args, _forward=module.forward, _label=f"layer4.{label}", **kwargs):
            with record_function(_label):
                return _forward(*args, **kwargs)

        module.forward = labelled
        wrapped.append(module)
    try:
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
    finally:
        for module in wrapped:
            del module.forward
    return {e.key[len("layer4."):]: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key.startswith("layer4.")}


def _markdown_table(frame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" if frame[c].dtype.kind in "if" else "---" for c in frame.columns) + "|"
    lines = [header, rule]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _section(frame, title: str, summary: dict, source: str) -> list[str]:
    """One markdown table per run (one `strabench bench` call = one timestamp) in ``frame``."""
    import pandas as pd

    lines: list[str] = []
    order = {name: i for i, name in enumerate(MODELS)}
    runs = frame.groupby(["mode", "timestamp"], sort=False)
    keys = sorted(runs.groups, key=lambda k: (("infer", "train").index(k[0]), k[1]))
    for mode, stamp in keys:
        part = runs.get_group((mode, stamp))
        part = part.sort_values("model", key=lambda s: s.map(lambda n: order.get(n, len(order))))
        row = part.iloc[0]
        table = pd.DataFrame(
            {
                "model": part["model"],
                "median ms": part["median_ms"],
                "IQR ms": part["iqr_ms"],
                "img/s": part["images_per_s"],
                "ratio to resnet50": part["ratio_to_baseline"],
                "per-round ratios": [
                    "—" if m == BASELINE else " ".join(f"{v:.2f}" for v in json.loads(r))
                    for m, r in zip(part["model"], part["ratio_rounds"])
                ],
                "peak mem MB": part["peak_mem_mb"],
                "samples": part["samples"],
            }
        )
        kind = {"infer": "inference (eval, inference_mode)", "train": "train step"}[mode]
        lines += [
            f"### {kind.capitalize()}: {len(part)} models, {int(row['rounds'])} rounds ({stamp[:16]} UTC)",
            "",
            f"batch {int(row['batch'])}, {row['input']}, {int(row['threads'])} threads, amp {row['amp']}, "
            f"min_run_time {row['min_run_time']} s, allocator: {row.get('allocator', 'system default')} (`{source}`)",
            "",
            _markdown_table(table),
            "",
        ]
        stra = part[part["model"] == "resnet50_stra"]
        if not stra.empty:
            ratio = float(stra["ratio_to_baseline"].iloc[0])
            target = TARGETS[mode]
            verdict = "meets it" if ratio <= target else f"misses by {ratio - target:+.3f} ({(ratio / target - 1) * 100:+.1f}%)"
            summary.setdefault(mode, []).append({"source": source, "rounds": int(row["rounds"]), "ratio": ratio, "target": target})
            lines += [f"**resnet50_stra / resnet50 ({mode}, {int(row['rounds'])} rounds): {ratio:.3f}× — target ≤ {target:.2f}×, {verdict}.**", ""]
    return lines


def report(args: argparse.Namespace) -> dict:
    import pandas as pd

    frames = []
    for path in args.csv:
        frame = pd.read_csv(path)
        if frame.empty:
            raise SystemExit(f"{path}: no rows")
        frames.append((path, frame))
    first = frames[0][1].iloc[-1]
    optimizers = [o for _, f in frames for o in f["optimizer"].dropna()]
    stamps = sorted({t[:16] for _, f in frames for t in f["timestamp"]})
    lines = [
        "# `strabench bench` on CPU: ReID ResNet-50 variants vs resnet50",
        "",
        f"- Machine: {first['cpu']} (/proc/cpuinfo), {int(first['cpu_count'])} cores (os.cpu_count), "
        f"torch {first['torch_version']}, {first['device']}, fp32",
        f"- Date (UTC): {stamps[0]} to {stamps[-1]}",
        "- Ratio = per-image step time / resnet50's, measured just before and after it in the same process "
        "(B c1 B c2 ... B, rounds chained, direction alternating), median over rounds. Ratios are the numbers "
        "that hold on this shared machine; milliseconds drift with its load.",
        "- Train step: forward (train mode), cross-entropy on random labels + the diversity loss (StRA models), "
        f"backward, {optimizers[0] if optimizers else 'SGD'} step, zero_grad(set_to_none=True).",
        f"- Peak mem: {first['mem_method']}.",
        "",
        "Commands:",
        "",
        "```",
        *args.commands,
        "```",
        "",
    ]
    summary: dict = {}
    for (path, frame), title in zip(frames, args.titles or [Path(p).stem for p, _ in frames]):
        lines += [f"## {title}", ""] + _section(frame, title, summary, str(path))
    if args.profile:
        prof = json.loads(Path(args.profile).read_text())["profile"]
        lines += [
            f"## Where the time goes: layer4 under torch.profiler (batch {prof['batch']}, {prof['input']}, "
            f"{prof['threads']} threads)",
            "",
            f"Self CPU time per op over layer4's three bottlenecks, the same layer3 output fed to both models; "
            f"median over {prof.get('repeat', '?')} interleaved repetitions.",
            "",
        ]
        for mode in ("infer", "train"):
            for name, entry in prof["models"].items():
                e = entry[mode]
                lines += [f"**{name} layer4, {mode}: {e['layer4_ms_per_step']:.1f} ms/step (profiler self-time total)**", ""]
                ops = pd.DataFrame(e["top_ops"]).rename(columns={"self_ms_per_step": "self ms/step", "calls_per_step": "calls/step"})
                ops["share"] = (ops["share"] * 100).round(1).astype(str) + "%"
                lines += [_markdown_table(ops), ""]
    if args.notes:
        lines += [Path(args.notes).read_text().rstrip(), ""]
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, out)
    return {"written": str(out), "stra_vs_resnet50": summary, "generated": datetime.datetime.now().isoformat()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_run = sub.add_parser("run", help="benchmark the models (JSON on stdout, progress on stderr)")
    p_run.add_argument("--models", nargs="+", default=MODELS)
    p_run.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p_run.add_argument("--batch", type=int, default=32)
    p_run.add_argument("--rounds", type=int, default=3)
    p_run.add_argument("--min-run-time", type=float, default=1.0)
    p_run.add_argument("--threads", type=int, default=None)
    p_run.add_argument("--csv", default=None)
    p_prof = sub.add_parser("profile", help="torch.profiler top ops of layer4, resnet50 vs resnet50_stra")
    p_prof.add_argument("--batch", type=int, default=32)
    p_prof.add_argument("--repeat", type=int, default=5)
    p_prof.add_argument("--top", type=int, default=12)
    p_prof.add_argument("--threads", type=int, default=None)
    p_prof.add_argument("--channels-last", action="store_true", help="models and input in channels_last")
    p_rep = sub.add_parser("report", help="markdown from a bench CSV")
    p_rep.add_argument("csv", nargs="+", help="bench CSVs, one section each")
    p_rep.add_argument("--title", dest="titles", action="append", default=[], help="section title per CSV")
    p_rep.add_argument("--out", required=True)
    p_rep.add_argument("--profile", default=None, help="JSON written by the profile sub-command")
    p_rep.add_argument("--notes", default=None, help="markdown appended at the end")
    p_rep.add_argument("--cmd", dest="commands", action="append", default=[], help="a command line to quote (repeatable)")
    args = parser.parse_args()
    result = {"run": run, "profile": profile, "report": report}[args.action](args)
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

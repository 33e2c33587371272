"""Latency and throughput: median and IQR per step, images/s, peak memory, ratio to a baseline.

Each model is warmed up, then timed with torch.utils.benchmark (blocked_autorange) over
--rounds rounds. With --baseline, every candidate is measured between two baseline
measurements (B c1 B c2 ... B) and its ratio_to_baseline is the median over rounds of its
per-image time over the mean of those two: ratios hold on a noisy machine, milliseconds don't.
--mode train times a full step (forward, cross-entropy on random labels + the model's auxiliary
losses such as StRA's diversity loss, backward, SGD momentum step). Peak memory is what one
untimed step needs above what is resident (CUDA: max_memory_allocated; CPU: RSS growth).
--runtime compile times torch.compile'd models, --runtime onnxruntime their ONNX export in
onnxruntime (inference only, outputs checked against eager first; needs the onnx extra): every
model, the baseline included, runs under that runtime, and compile_s (torch.compile's first
call, or ONNX export + session creation) is reported on its own, outside warm-up and timings.
On CUDA out-of-memory the batch is halved.
--replace puts blocks into the listed models (not into --baseline), so
`bench resnet50 --baseline resnet50 --replace 'layer4.*.conv2=stra'` times ResNet-50 with StRA
in layer4 against plain ResNet-50; its row is named resnet50[layer4.*.conv2=stra].

--kernels fused (default) runs StRA's blocks on their strabench:: operators (in inference each
block fused into one call), stock runs every block in plain torch ops: the design comparison,
with no block hand-fused. both times each model both ways in one interleaved run (the stock twin
is the row "MODEL (stock)"; the fused row's stock_ratio_to_baseline is its twin's). Every row
names what its blocks ran (implementation).
"""

from __future__ import annotations

from typing import Annotated

import typer

from strabench.cli._complete import model_names


def bench_command(
    models: Annotated[list[str], typer.Argument(autocompletion=model_names, help="Registered names (see `strabench list`), torchvision:NAME, timm:NAME or package.module:callable.")],
    baseline: Annotated[str | None, typer.Option("--baseline", help="Model to interleave with the others and report ratios to.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="infer (eval, inference_mode) or train (full step).")] = "infer",
    batch: Annotated[int, typer.Option("--batch", help="Images per step.")] = 32,
    input: Annotated[str | None, typer.Option("--input", help="HEIGHTxWIDTH, default: each model's (e.g. 256x128).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads, default: all cores (os.cpu_count()).")] = None,
    amp: Annotated[str, typer.Option("--amp", help="none, bf16 or fp16 (fp16: cuda only) autocast.")] = "none",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Model and input in channels_last memory format.")] = False,
    runtime: Annotated[str, typer.Option("--runtime", help="eager, compile (torch.compile) or onnxruntime (ONNX export, inference only).")] = "eager",
    kernels: Annotated[str, typer.Option("--kernels", help="fused (StRA's operators), stock (every block in plain torch ops) or both.")] = "fused",
    compile: Annotated[bool, typer.Option("--compile", hidden=True, help="Replaced by --runtime compile.")] = False,
    min_run_time: Annotated[float, typer.Option("--min-run-time", help="Seconds per measurement (blocked_autorange).")] = 1.0,
    rounds: Annotated[int, typer.Option("--rounds", help="Measurement rounds; ratios are medians over them.")] = 3,
    replace: Annotated[list[str] | None, typer.Option("--replace", help="PATTERN=BLOCK: put a block in place of matching modules of the listed models (not --baseline), e.g. 'layer4.*.conv2=stra' (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per model.")] = False,
    csv: Annotated[str | None, typer.Option("--csv", help="Append one row per model to this CSV (header once).")] = None,
) -> None:
    from strabench.env import configure_process

    configure_process(calm_threads=False)  # heap kept (recorded in every row); thread policy left to the user
    from strabench.cli._common import parse_replace, parse_size, print_json
    from strabench.errors import ConfigError
    from strabench.measure.latency import append_csv, benchmark_models, check_csv

    if compile:
        raise ConfigError("--compile is now --runtime compile")
    size = parse_size(input) if input else None
    blocks = parse_replace(replace)
    if csv:
        check_csv(csv)
    rows = benchmark_models(
        models, baseline=baseline, mode=mode, batch=batch, input_size=size, device=device, threads=threads, amp=amp,
        channels_last=channels_last, runtime=runtime, min_run_time=min_run_time, rounds=rounds, progress=_progress(),
        replace=blocks, kernels=kernels,
    )
    if csv:
        append_csv(rows, csv)
    if as_json:
        print_json(rows)
    else:
        _render(rows)


def _progress():
    """Progress lines on stderr (stdout stays clean for --json), so long runs can be followed."""
    from strabench.cli._common import console

    err = console(stderr=True)
    return lambda message: err.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


#: Settings shown once above the table when every row has the same (a column only when they differ).
_SETTINGS = (("mode", "mode"), ("batch", "batch"), ("input", "input"), ("device", "device"), ("threads", "threads"))


def _render(rows: list[dict]) -> None:
    """One table that never cuts a number (``strabench.report.terminal.print_table``): settings
    common to every row go to a line above it; samples and the rest stay in --json / --csv."""
    from strabench.cli._common import console
    from strabench.report.terminal import NOISY_LEGEND, drop_empty_columns, print_table

    out = console()
    out.soft_wrap = not out.is_terminal  # a pipe or log: each line whole
    first = rows[0]
    varying = [(key, label) for key, label in _SETTINGS if len({str(r[key]) for r in rows}) > 1]
    common = [f"{label} {first[key]}" for key, label in _SETTINGS if (key, label) not in varying]
    compiled = any(row.get("compile_s") is not None for row in rows)
    headers = ["model", *(label for _, label in varying), "median ms", "IQR ms", "img/s", "ratio", "ratio range", "peak MB",
               *(["compile s"] if compiled else []), "noisy"]
    cells = []
    for row in rows:
        ratio = row["ratio_to_baseline"]
        spread = [r for r in (row.get("ratio_rounds") or []) if r == r]
        cells.append([
            row["model"], *(str(row[key]) for key, _ in varying),
            f"{row['median_ms']:.1f}", f"{row['iqr_ms']:.1f}", f"{row['images_per_s']:.1f}",
            "—" if ratio is None else f"{ratio:.3f}×",
            f"{min(spread):.3f}–{max(spread):.3f}" if spread and row["model"] != first["baseline"] else "—",
            f"{row['peak_mem_mb']:.1f}",
            *(["—" if row.get("compile_s") is None else f"{row['compile_s']:.1f}"] if compiled else []),
            "NOISY" if row.get("noisy") else "",
        ])
    headers, cells, dropped = drop_empty_columns(headers, cells)
    noisy_column = headers.index("noisy") if "noisy" in headers else -1
    out.print(f"strabench bench: {', '.join(common)} (torch {first['torch_version']}, {first['cpu']})", highlight=False, soft_wrap=True)
    print_table(out, headers, cells, right=lambda index: 0 < index != noisy_column, styles={noisy_column: "bold yellow"})
    extras = [f"amp={first['amp']}", f"channels_last={first['channels_last']}", f"runtime={first['runtime']}"]
    out.print(", ".join(extras) + f"; {first['rounds']} round(s), min_run_time {first['min_run_time']} s", highlight=False)
    for row in rows:
        if row.get("implementation"):
            out.print(f"{row['model']} ran {row['implementation']}", highlight=False)
    if first["baseline"]:
        out.print(f"ratio = per-image time / {first['baseline']} measured around it, median over rounds", highlight=False)
    if compiled:
        out.print("compile s: torch.compile's first call, or ONNX export + session creation; not in warm-up or timings")
    if first["optimizer"]:
        out.print(f"train step: CE + aux losses, backward, {first['optimizer']}", highlight=False)
    out.print(f"peak mem: {first['mem_method']}", highlight=False)
    if dropped:
        out.print(f"left out (— in every row): {', '.join(dropped)}", highlight=False)
    from rich.markup import escape

    for row in rows:
        if row["note"]:
            out.print(f"[yellow]{escape(row['model'])}: {escape(row['note'])}[/]")
    if any(row.get("noisy") for row in rows):
        out.print(NOISY_LEGEND, highlight=False)
    for row in rows:
        if row.get("noisy"):
            out.print(f"[bold yellow]warning[/]: {escape(row['model'])} timing is noisy: {escape(str(row['noise']))}")


def register(app: typer.Typer) -> None:
    paragraphs = (" ".join(p.split()) for p in (__doc__ or "").split("\n\n"))
    app.command("bench", help="\n\n".join(paragraphs))(bench_command)

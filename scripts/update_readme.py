"""Regenerate the generated blocks of README.md from the committed results.

A generated block is the text between `<!-- NAME -->` and `<!-- /NAME -->`; every NAME the README
uses must be one of `BLOCKS` below, each rendered from a folder of results/ by the code the
CLI uses to print it, so the README shows what a reader will see and quotes no number by hand:

- DEMO: what `strabench report results/demo` prints on a 100-column terminal (the compact view);
- QUICK-VERDICTS: the verdict line of each variant of results/quick against its baseline, as
  that report prints them;
- DEFORMATION-VERDICTS: the same for results/deformation, one line per variant and deformation
  level (each compared with the baseline at its own level).
- SPEED: resnet50_stra's latency ratio to resnet50 from results/bench/kernels/*.json, fused and
  stock, and StRA's ratio to SASA with both in torch ops.

`--check` exits 1 when README.md differs from what this script would write (tests/test_readme.py
runs it), so the README cannot go stale silently: re-run the suites, then `make readme`.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "results"
#: The terminal width the DEMO block is drawn at (tables split into parts that fit, as on a terminal).
WIDTH = 100
BLOCK = re.compile(r"<!-- ([A-Z][A-Z0-9-]*) -->\n(.*?)<!-- /\1 -->", re.S)


def _suite(results: Path, name: str):
    from strabench.report.tables import load_suite_results

    directory = results / name
    if not directory.is_dir():
        raise SystemExit(f"README.md quotes {name}, but {directory} does not exist: run suites/{name}.toml into results/")
    return load_suite_results(directory)


def _seed_list(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def terminal_report(results: Path, name: str, *, width: int = WIDTH) -> str:
    """The compact view `strabench report results/NAME` prints on a terminal `width` columns wide,
    then the line naming the markdown report, as plain text."""
    from rich.console import Console

    from strabench.report.terminal import compact_view, print_suite

    buffer = io.StringIO()
    # A terminal (tables split to fit the width, as `strabench report` does), without colour codes.
    out = Console(file=buffer, width=width, force_terminal=True, color_system=None, highlight=False)
    print_suite(out, compact_view(_suite(results, name)))
    # The closing line of strabench.cli.report._print_views, for the committed report's path.
    out.print(f"markdown with notes and plots: results/{name}/report.md; every column: --wide", highlight=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def demo_block(results: Path) -> str:
    return f"```text\n$ strabench report results/demo\n{terminal_report(results, 'demo')}\n```"


def quick_verdicts_block(results: Path) -> str:
    from strabench.report.tables import summarise
    from strabench.report.terminal import compact_view

    suite = _suite(results, "quick")
    summary = summarise(suite)
    seeds = sorted({seed for record in summary for seed in record["seeds"]})
    settings = sorted({f"`{r['data']}`, `{r['profile']}` profile" for r in summary if r.get("data")})
    verdicts = compact_view(suite).verdicts
    if not verdicts:
        raise SystemExit(f"results/quick has no comparison with its baseline to quote (runs: {len(suite.rows)})")
    lead = (f"From [`results/quick`](results/quick/report.md) ({sum(1 for r in summary if r['finished'])} variants of `suites/quick.toml`, "
            f"seeds {_seed_list(seeds)}, {suite.primary_metric} on {'; '.join(settings)}), each variant "
            f"against `{suite.baseline}`, paired by seed:")
    return lead + "\n\n```text\n" + "\n".join(verdicts) + "\n```"


def deformation_verdicts_block(results: Path) -> str:
    from strabench.report.tables import summarise
    from strabench.report.terminal import compact_view

    suite = _suite(results, "deformation")
    summary = summarise(suite)
    seeds = sorted({seed for record in summary for seed in record["seeds"]})
    levels = list(dict.fromkeys(r["setting"] for r in summary if r.get("setting")))
    verdicts = compact_view(suite).verdicts
    if not verdicts:
        raise SystemExit(f"results/deformation has no comparison with its baseline to quote (runs: {len(suite.rows)})")
    variants = list(dict.fromkeys(r["variant"] for r in summary if r["finished"]))  # not the plan's unrun ones
    lead = (f"From [`results/deformation`](results/deformation/report.md) ({', '.join(f'`{v}`' for v in variants)} "
            f"of `suites/deformation.toml` at the levels {', '.join(f'`{level}`' for level in levels)}, seeds "
            f"{_seed_list(seeds)}, {suite.primary_metric}), each variant against `{suite.baseline}` at the same level:")
    return lead + "\n\n```text\n" + "\n".join(verdicts) + "\n```"


def speed_block(results: Path) -> str:
    """One row per setting of ``benchmarks/kernels_report.py``: StRA fused, StRA stock, StRA / SASA stock."""
    import json

    lines = ["| setting (CPU, fp32, 256×128) | StRA / ResNet-50, fused | in torch ops | StRA / SASA, both in torch ops |",
             "|---|---:|---:|---:|"]
    labels = {"reid-infer-b32": "inference, batch 32", "reid-infer-b1": "inference, batch 1", "reid-train-b32": "train step, batch 32"}
    for key, label in labels.items():
        path = results / "bench" / "kernels" / f"{key}.json"
        if not path.is_file():
            raise SystemExit(f"{path.relative_to(results.parent)} is missing: run `python benchmarks/kernels_report.py run`")
        rows = {r["model"]: r["ratio_to_baseline"] for r in json.loads(path.read_text())["rows"]}
        design = rows["resnet50_stra (stock)"] / rows["resnet50_sasa (stock)"]
        lines.append(f"| {label} | {rows['resnet50_stra']:.3f}× | {rows['resnet50_stra (stock)']:.3f}× | {design:.3f}× |")
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[Path], str]] = {"DEMO": demo_block, "QUICK-VERDICTS": quick_verdicts_block,
                                            "DEFORMATION-VERDICTS": deformation_verdicts_block, "SPEED": speed_block}


def render(readme: str, results: Path = RESULTS) -> str:
    """README.md with every generated block rendered afresh from ``results``."""
    names = [match.group(1) for match in BLOCK.finditer(readme)]
    unknown = sorted(set(names) - set(BLOCKS))
    if unknown:
        raise SystemExit(f"README.md has generated blocks this script cannot render: {', '.join(unknown)} (known: {', '.join(BLOCKS)})")
    if len(names) != len(set(names)):
        raise SystemExit(f"README.md has a generated block twice: {names}")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"<!-- {name} -->\n{BLOCKS[name](results)}\n<!-- /{name} -->"

    return BLOCK.sub(fill, readme)


def stale_blocks(current: str, wanted: str) -> list[str]:
    now = {m.group(1): m.group(2) for m in BLOCK.finditer(current)}
    return [m.group(1) for m in BLOCK.finditer(wanted) if now.get(m.group(1)) != m.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date; write nothing")
    parser.add_argument("--readme", type=Path, default=README, help="the README to update (default: README.md)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    wanted = render(current, args.results)
    if args.check:
        if wanted != current:
            print(f"{args.readme.name} is stale (blocks: {', '.join(stale_blocks(current, wanted)) or 'outside them'}): "
                  "run `make readme`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        from strabench.io import atomic_write_text

        atomic_write_text(args.readme, wanted)
        print(f"{args.readme.name} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

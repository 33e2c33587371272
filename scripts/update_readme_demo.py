"""Write the output of `make demo` into README.md, between the DEMO-OUTPUT markers.

The block is rendered from the committed reference run of the demo suite (results/demo/,
trained by `strabench run suites/demo.toml --out results`) with the same code `make demo`
uses to print its report, so it shows what a newcomer will see. `--check` exits 1 when
README.md differs from what this script would write (tests/test_readme.py runs it), so the
README cannot go stale silently: re-run the suite, then `make readme-demo`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEMO_RESULTS = REPO / "results" / "demo"
START, END = "<!-- DEMO-OUTPUT -->", "<!-- /DEMO-OUTPUT -->"


def demo_block(results: Path = DEMO_RESULTS) -> str:
    """The markdown `strabench report results/demo` prints (plot links left out: the README
    shows the table and its notes)."""
    from strabench.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        report = build_report([results], fmt="md", paper=True, plots=False, out=Path(tmp) / "report.md")
    text = report.text.removeprefix("# strabench report\n\n").strip()
    text = text.replace("## demo", "#### `make demo` (reference run in `results/demo/`)", 1)
    return f"{START}\n{text}\n{END}"


def updated_readme(readme: str, block: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md needs the markers {START} and {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = updated_readme(current, demo_block())
    if args.check:
        if wanted != current:
            print("README.md's demo block is stale: run `make readme-demo`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        from strabench.io import atomic_write_text

        atomic_write_text(README, wanted)
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

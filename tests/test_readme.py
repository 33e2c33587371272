"""README.md, docs/ and results/README.md: links resolve inside the repository, nothing names a
machine path or an internal working folder, and README.md is a front door whose every number is
generated from the committed results by scripts/update_readme.py (so it cannot go stale
silently): its generated blocks are what the script renders, and no figure is written by hand
outside them."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "results" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
GENERATED = re.compile(r"<!-- ([A-Z][A-Z0-9-]*) -->\n.*?<!-- /\1 -->", re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _script():
    spec = importlib.util.spec_from_file_location("update_readme", REPO / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name} -->\n", 1)[1].split(f"<!-- /{name} -->", 1)[0]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code is not links: a[g, k](p) is maths
    prose = "\n".join(line for line in prose.splitlines() if not line.startswith("    "))
    links = LINK.findall(re.sub(r"`[^`]*`", "", prose))
    for target in links:
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in anchors, f"{doc.name}: no heading for #{anchor}"
            continue
        resolved = (doc.parent / path).resolve()
        assert resolved.exists(), f"{doc.name}: link to {target} does not exist"
        assert REPO in resolved.parents or resolved == REPO, f"{doc.name}: link to {target} leaves the repository"
        if anchor and resolved.suffix == ".md":
            headings = {_slug(line.lstrip("#")) for line in resolved.read_text(encoding="utf-8").splitlines() if line.startswith("#")}
            assert anchor in headings, f"{doc.name}: {path} has no heading for #{anchor}"


def test_docs_index_lists_every_page() -> None:
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md")
    missing = [name for name in pages if f"]({name})" not in index]
    assert not missing, f"docs/README.md does not index {missing}"


def test_nothing_names_a_machine_path_or_working_folder() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    # this checkout's own absolute path (wherever it is), home directories, the team's working notes
    here = re.escape(str(REPO))
    pattern = re.compile(here + r"|/home/\w|shared/(design|paper)|CONTRIBUTING-helpers")
    offenders = []
    for name in tracked:
        path = REPO / name
        if name == "tests/test_readme.py" or path.suffix not in {".py", ".md", ".toml", ".txt", ".json", ".csv", ""}:
            continue
        if path.is_file() and pattern.search(path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(name)
    assert not offenders, offenders


# --- generated blocks -----------------------------------------------------------------------------


def test_readme_generated_blocks_match_the_committed_results() -> None:
    readme = README.read_text(encoding="utf-8")
    assert [m.group(1) for m in GENERATED.finditer(readme)] == ["DEMO", "QUICK-VERDICTS", "DEFORMATION-VERDICTS", "SPEED"]
    assert _script().render(readme) == readme, "README.md is stale: run `make readme`"


def test_speed_block_quotes_the_committed_kernel_runs() -> None:
    """Each row: resnet50_stra's fused and stock ratios and StRA / SASA in torch ops, as the JSON has them."""
    files = {"inference, batch 32": "reid-infer-b32", "inference, batch 1": "reid-infer-b1", "train step, batch 32": "reid-train-b32"}
    rows = [line for line in _block(README.read_text(encoding="utf-8"), "SPEED").splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in files]
    assert [line.split("|")[1].strip() for line in rows] == list(files)
    for line in rows:
        cells = [c.strip().rstrip("×") for c in line.strip("|").split("|")]
        data = json.loads((REPO / "results" / "bench" / "kernels" / f"{files[cells[0]]}.json").read_text())
        ratio = {r["model"]: r["ratio_to_baseline"] for r in data["rows"]}
        assert float(cells[1]) == pytest.approx(ratio["resnet50_stra"], abs=5e-4)
        assert float(cells[2]) == pytest.approx(ratio["resnet50_stra (stock)"], abs=5e-4)
        assert float(cells[3]) == pytest.approx(ratio["resnet50_stra (stock)"] / ratio["resnet50_sasa (stock)"], abs=5e-4)


def test_update_readme_check_fails_on_a_stale_readme_and_the_script_repairs_it(tmp_path: Path) -> None:
    script = _script()
    original = README.read_text(encoding="utf-8")
    copy = tmp_path / "README.md"
    shutil.copyfile(README, copy)
    assert script.main(["--check", "--readme", str(copy)]) == 0
    demo = _block(original, "DEMO")
    copy.write_text(original.replace(demo, demo.replace("resnet50", "resnet5O", 1), 1), encoding="utf-8")
    assert script.main(["--check", "--readme", str(copy)]) == 1
    assert script.main(["--readme", str(copy)]) == 0  # rewrites it
    assert copy.read_text(encoding="utf-8") == original
    assert script.main(["--check", "--readme", str(copy)]) == 0


def test_update_readme_refuses_a_block_it_cannot_render(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8") + "\n<!-- SPEED -->\n0.82x\n<!-- /SPEED -->\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="SPEED"):
        _script().main(["--check", "--readme", str(copy)])


def test_readme_demo_block_is_the_compact_terminal_view_with_our_counts() -> None:
    """The DEMO block is what `strabench report` prints on a 100-column terminal (not the wide
    markdown table), and its complexity columns hold our counts as counted by hand (the design
    notes' 24.56 M / 4.054 G for ResNet-50 and 17.62 M / 3.166 G for StRA at 256x128)."""
    block = _block(README.read_text(encoding="utf-8"), "DEMO")
    assert block.startswith("```text\n$ strabench report results/demo\n") and block.rstrip().endswith("```")
    lines = block.strip().splitlines()[2:-1]
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert not any(line.startswith("|") for line in lines), "the markdown table, not the terminal view"
    assert any(line.startswith("verdict: stra vs resnet50") for line in lines)
    header = next(line for line in lines if "variant" in line and "untrained" in line)
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = {cells[0]: dict(zip(names, cells)) for cells in
            ([cell.strip() for cell in line.strip("│").split("│")] for line in lines if line.startswith("│"))}
    for variant, (params, gmacs) in {"resnet50": ("24.56", "4.054"), "stra": ("17.62", "3.166")}.items():
        assert rows[variant]["params (M)"] == params and rows[variant]["GMACs"] == gmacs


def test_demo_report_has_the_papers_counts_and_says_why_accuracies_have_none(tmp_path: Path) -> None:
    """The markdown report of the same run (`strabench report results/demo`, which the README's
    block points to) puts the paper's printed Table 1 numbers beside ours, and leaves the paper's
    accuracies out only because the data is synthetic."""
    from strabench.report import build_report

    text = build_report([REPO / "results" / "demo"], fmt="md", paper=True, plots=False, out=tmp_path / "report.md").text
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells)) for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:4])}
    expected = {"resnet50": (24.56, 24.6, 4.054, 4.05), "stra": (17.62, 17.6, 3.166, 3.17)}
    for variant, (params, params_paper, gmacs, gmacs_paper) in expected.items():
        row = rows[variant]
        assert float(row["params (M)"]) == params and float(row["params paper (M)"]) == params_paper
        assert float(row["Δ params (M)"]) == pytest.approx(params - params_paper, abs=1e-9)
        assert float(row["GMACs (paper conv.)"]) == gmacs and float(row["GMACs paper"]) == gmacs_paper
        assert float(row["Δ GMACs"]) == pytest.approx(gmacs - gmacs_paper, abs=1e-9)
        assert row["mAP paper"] == row["rank1 paper"] == "—"
    assert "— here because: data synthetic_reid, not Market-1501" in " ".join(text.split())


# --- a front door ---------------------------------------------------------------------------------

#: A figure: a number with a unit (0.82x, 137 s, 4 min, 12 %, 296 MB, 7 seeds), any decimal
#: (9.94), or a metric followed by its value (mAP 9.9).
UNIT = (r"(?:%|×|x\b|s\b|ms\b|µs|us\b|sec(?:onds?)?\b|min(?:utes?)?\b|h\b|hours?\b|[KMGT]i?B\b|M\b|G\b|GMACs?\b"
        r"|GFLOPs?\b|MACs\b|FLOPs\b|img/s|images/s|cores?\b|seeds?\b|epochs?\b|runs?\b|points?\b|identities\b)")
FIGURE = re.compile(rf"(?<![\w.])\d+(?:[.,]\d+)?[½¼¾]?\s*{UNIT}|\d+\.\d+|\b(?:mAP|rank-?1|accuracy)\s*[=:]?\s*[-+]?\d")
#: The one hand-written figure: how long `make demo` takes (re-measured by hand; stated once).
DEMO_TIME = re.compile(r"about [\d½]+ minutes on \d+ idle cores")
#: Numbers that are names, sizes or settings, not results.
ALLOWED = [
    re.compile(r"ResNet-50"),
    re.compile(r"\b\d+[x×]\d+\b"),  # input sizes: 256x128, 256×128
    re.compile(r"Python \d+\.\d+"),
    re.compile(r"\b\d+\.\d+\.\d+\b"),  # versions
    re.compile(r"Sec\. \d+\.\d+"),  # the paper's sections
    re.compile(r"\b95 % interval"),  # the confidence level, a convention
    re.compile(r"loss \+ 1\.0 \*"),  # the diversity weight in the Python API example
]


def _hand_written(readme: str) -> str:
    return GENERATED.sub("", readme)


def test_readme_has_no_hand_written_figures_outside_generated_blocks() -> None:
    text = _hand_written(README.read_text(encoding="utf-8"))
    text = DEMO_TIME.sub("", text)
    for allowed in ALLOWED:
        text = allowed.sub("", text)
    found = [(m.group(0), text[max(0, m.start() - 40):m.end() + 10].replace("\n", " ")) for m in FIGURE.finditer(text)]
    assert not found, f"hand-written figures in README.md (generate them, move them to docs/, or allow them here): {found}"


@pytest.mark.parametrize("figure", ["0.82x", "0.82×", "mAP 9.9", "137 s", "about 70 min", "12 %", "296 MB", "7 seeds", "9.94"])
def test_the_figure_check_catches(figure: str) -> None:
    assert FIGURE.search(f"StRA runs at {figure} here")


def test_readme_states_the_demo_time_once() -> None:
    assert len(DEMO_TIME.findall(_hand_written(README.read_text(encoding="utf-8")))) == 1


def test_readme_is_a_front_door() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for needed in ("make demo", "make test", "source .venv/bin/activate", ".venv/bin/strabench", "docs/blocks.md",
                   "docs/guarantees.md", "docs/README.md", "results/README.md"):
        assert needed in readme, needed


def test_readme_commands_use_only_options_that_exist() -> None:
    """Every `strabench CMD --option` line in README.md's code blocks names a command and options
    that `strabench CMD --help` lists."""
    from typer.testing import CliRunner

    from strabench.cli import app

    readme = README.read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"```bash\n(.*?)```", readme, re.S))
    lines = [line.split("#", 1)[0] for line in code.splitlines() if line.lstrip().startswith(("strabench ", ".venv/bin/strabench "))]
    commands = {}
    for line in lines:
        words = line.split()
        words = words[1:]
        if words and not words[0].startswith("-"):
            commands.setdefault(words[0], set()).update(w.split("=")[0] for w in words[1:] if w.startswith("--"))
    assert {"list", "flops", "bench", "train", "eval", "run", "report", "show", "status", "viz", "export", "doctor"} <= set(commands)
    runner = CliRunner()
    for command, options in commands.items():
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (command, result.output)
        missing = [o for o in options if o not in result.output]
        assert not missing, f"strabench {command} has no {missing}"

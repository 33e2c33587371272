"""README.md and docs/: links resolve inside the repository, nothing names a machine path or an
internal working folder, and the demo block is what scripts/update_readme_demo.py renders from
the committed results/demo (so it cannot go stale silently)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
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


def test_readme_demo_block_matches_the_committed_demo_run() -> None:
    spec = importlib.util.spec_from_file_location("update_readme_demo", REPO / "scripts" / "update_readme_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = module.demo_block()
    assert "resnet50" in block and "stra" in block and "untrained" in block
    assert block in readme, "README.md's demo block is stale: run `make readme-demo`"


def test_readme_demo_table_has_the_papers_and_our_counts() -> None:
    """Independent of the report code: the complexity columns hold the paper's printed Table 1
    numbers and ours as counted by hand (the design notes' 24.56M / 4.054 G and 17.62M / 3.166 G
    at 256x128); the accuracy paper columns are empty only because the data is synthetic."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- DEMO-OUTPUT -->", 1)[1].split("<!-- /DEMO-OUTPUT -->", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
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
    assert "— here because: data synthetic_reid, not Market-1501" in " ".join(block.split())

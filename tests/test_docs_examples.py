"""docs/blocks.md's "Your own block" example (the block, then the code that counts it), run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from strabench.cli import app

BLOCKS_DOC = Path(__file__).resolve().parent.parent / "docs" / "blocks.md"


def test_blocks_doc_example_runs(tmp_path, monkeypatch, capsys):
    section = BLOCKS_DOC.read_text(encoding="utf-8").split("\n## Your own block\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2 and blocks[0].startswith("# myblocks.py") and "class ChannelGate" in blocks[0]
    (tmp_path / "myblocks.py").write_text(blocks[0])
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(blocks[1], "docs/blocks.md example", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in printed] == ["paper", "fvcore", "ptflops"]
        assert printed[1].endswith("[]") and printed[2].endswith("[]")  # fvcore and ptflops count it all
        result = CliRunner().invoke(app, ["flops", "resnet50", "--replace", "layer4.*.conv2=myblocks:ChannelGate", "--json"])
        assert result.exit_code == 0, result.output
        bad = CliRunner().invoke(app, ["flops", "resnet50", "--replace", "layer4.*.conv1=myblocks:ChannelGate"])
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    finally:
        sys.modules.pop("myblocks", None)

"""The README's "Your own block in five minutes" example, run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from strabench.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_block_example_runs(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Your own block in five minutes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2 and blocks[0].startswith("# myblocks.py")
    (tmp_path / "myblocks.py").write_text(blocks[0])
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(blocks[1], "README example", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in printed] == ["paper", "fvcore", "ptflops"]
        assert printed[1].endswith("[]") and printed[2].endswith("[]")  # fvcore and ptflops count it all
        result = CliRunner().invoke(app, ["flops", "resnet50", "--replace", "layer4.*.conv2=myblocks:ChannelGate", "--json"])
        assert result.exit_code == 0, result.output
        bad = CliRunner().invoke(app, ["flops", "resnet50", "--replace", "layer4.*.conv1=myblocks:ChannelGate"])
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    finally:
        sys.modules.pop("myblocks", None)

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.registry import list_models

runner = CliRunner()


def test_list_json_and_wildcard():
    result = runner.invoke(app, ["list", "*stra*", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == set(list_models("*stra*"))
    assert len(rows) == 5
    stra = next(r for r in rows if r["name"] == "resnet50_stra")
    assert round(stra["params"] / 1e6, 1) == 17.6 and round(stra["macs_paper"] / 1e9, 2) == 3.17


def test_list_table_shows_every_model():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name in list_models():
        assert name in result.stdout


def test_flops_json_schema_paper_convention():
    result = runner.invoke(app, ["flops", "resnet50_stra", "--counter", "paper", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "resnet50_stra" and data["input"] == [3, 256, 128]
    assert isinstance(data["params"], int) and round(data["params"] / 1e6, 1) == 17.6
    assert round(data["macs"]["paper"] / 1e9, 2) == 3.17
    # the paper convention counts conv + linear only, and names the attention it leaves out
    stra_attention = [f"layer4.{i}.conv2.{part}" for i in range(3) for part in ("local (LocalAttention)", "mode (ModeAttention)")]
    assert data["paper_ref"]["gmacs"] == 3.17 and data["uncounted"] == {"paper": stra_attention}


def test_flops_all_conventions_schema():
    result = runner.invoke(app, ["flops", "resnet50_stra", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"model", "input", "params", "macs", "uncounted", "paper_ref"}
    assert set(data["macs"]) == {"paper", "fvcore", "ptflops"}
    assert all(isinstance(v, int) and v > 0 for v in data["macs"].values())
    assert data["uncounted"]["fvcore"] == data["uncounted"]["ptflops"] == []
    assert len(data["uncounted"]["paper"]) == 6  # StRA's local and mode attention, by name


def test_flops_other_input_and_by_module():
    result = runner.invoke(app, ["flops", "resnet50", "--input", "128x64", "--counter", "paper", "--by-module", "--json"])
    data = json.loads(result.stdout)
    assert data["input"] == [3, 128, 64]
    assert 0.9e9 < data["macs"]["paper"] < 1.1e9  # a quarter of the 256x128 cost
    assert sum(v["paper"] for v in data["by_module"].values()) == data["macs"]["paper"]


def test_by_module_sums_to_the_total_for_every_convention():
    result = runner.invoke(app, ["flops", "resnet50_stra", "--input", "64x32", "--by-module", "--json"])
    data = json.loads(result.stdout)
    for convention, total in data["macs"].items():
        assert sum(v.get(convention, 0) for v in data["by_module"].values()) == total, convention


@pytest.mark.parametrize(
    "args,needle",
    [
        (["flops", "resnet50_str"], "did you mean resnet50_stra"),
        (["flops", "resnet50", "--input", "250x7"], "multiples of 16"),
        (["flops", "resnet50", "--input", "big"], "HEIGHTxWIDTH"),
        (["flops", "resnet50", "--counter", "abacus"], "--counter"),
        (["flops", "resnet50", "--task", "fer"], "supports task"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "strabench", "list", "resnet50", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)[0]["name"] == "resnet50"
    bad = subprocess.run([sys.executable, "-m", "strabench", "flops", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model" in bad.stderr and "Traceback" not in bad.stderr

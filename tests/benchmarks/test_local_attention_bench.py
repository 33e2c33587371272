"""benchmarks/local_attention.py: every layer and part is timed and its traffic counted (a tiny
shape: this checks the plumbing, not the speed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("local_attention")


@pytest.mark.parametrize("channels_last", [False, True])
def test_layers_and_parts_are_timed(bench, channels_last: bool) -> None:
    result = bench.run(batch=4, channels=64, height=8, width=8, groups=4, threads=1, channels_last=channels_last,
                       min_run_time=0.01, seed=0, parts=True)
    names = {r["name"] for r in result["results"]}
    # NCHW: the parts around the attention operator; channels_last: the weights, then the weighting
    parts = ({"part_value_conv", "part_attention", "part_weighting"} if channels_last
             else {"part_value_conv", "part_branch", "part_attention_operator"})
    assert names == {"local_attention_fast", "local_attention_stock", "local_attention_unfold", "conv3x3", *parts}
    assert all(r["median_ms"] > 0 and r["kernels"] > 0 for r in result["results"])
    rows = {(r["name"], r["mode"]): r for r in result["results"]}
    if channels_last:
        # the weighting operator: the border mask and a copy of the masked weights to the kernel's
        # layout, then one operator
        assert rows["part_weighting", "fwd"]["kernels"] == 3
        assert rows["part_weighting", "fwd+bwd"]["mb_moved"] > rows["part_weighting", "fwd"]["mb_moved"]
    else:
        # the attention operator: one call (the border mask is a cached constant)
        assert rows["part_attention_operator", "fwd"]["kernels"] == 1
        assert rows["part_value_conv", "fwd"]["kernels"] == 1  # one operator call
        assert rows["local_attention_fast", "fwd"]["implementation"] == "grouped_pointwise + local_attention"
        assert rows["local_attention_fast", "fwd_eval"]["implementation"] == "local_attention_infer"
    assert rows["local_attention_stock", "fwd"]["implementation"] == "torch ops"
    for part in parts:
        assert result["ratios"][f"{part}_vs_conv_fwdbwd"] > 0
    assert result["ratios"]["fast_vs_stock_fwdbwd"] > 0
    assert result["machine"]["local_attention_kernel"] and "git_commit" in result["machine"]
    assert result["config"]["memory_format"] == ("channels_last" if channels_last else "contiguous")

"""Suite latency times each variant as its runs train it: overrides and replace blocks applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from strabench.measure import latency
from strabench.suite.config import load_suite
from strabench.suite.runner import LATENCY_JSON, SuiteListener, latency_settings, plan_runs, time_suite

from .fakes import write_suite

SUITE = """\
name = "lat"
data = "synthetic_expressions"
profile = "quick"
seeds = [0]

[train.quick]
epochs = 1

[measure]
params = true
macs = ["paper"]
input = "16x16"
latency = {{ batch = 1, min_run_time = 0.01, threads = 1 }}
accuracy = false

[[variants]]
name = "base"
model = "fer_resnet"
{variants}
"""

VARIANTS = """
[[variants]]
name = "gated"
model = "fer_resnet"
replace = { "layer4.*.conv2" = "eca" }

[[variants]]
name = "stra_g4"
model = "fer_resnet_stra"
overrides = { groups = 4 }

[[variants]]
name = "stra"
model = "fer_resnet_stra"
"""


def _plan(tmp_path: Path, variants: str = VARIANTS):
    plan = plan_runs(load_suite(write_suite(tmp_path, SUITE.format(variants=variants))), tmp_path / "out")
    plan.out_dir.mkdir(parents=True, exist_ok=True)  # the runner's session makes it
    return plan


@pytest.fixture
def captured(monkeypatch):
    """benchmark_models replaced by a recorder: what would be timed, and fake rows in its order."""
    seen: dict = {}

    def fake(names, *, baseline=None, input_size=None, **kwargs):
        seen.update(names=list(names), baseline=baseline, input_size=input_size)
        return [{"model": getattr(n, "name", str(n)), "median_ms": float(i + 1), "ratio_to_baseline": float(i + 1),
                 "ratio_rounds": [1.0], "noisy": False} for i, n in enumerate(names)]

    monkeypatch.setattr(latency, "benchmark_models", fake)
    return seen


def test_a_variant_with_replace_or_overrides_is_timed_as_built(tmp_path, captured):
    plan = _plan(tmp_path)
    time_suite(plan, SuiteListener())
    timing = json.loads((plan.out_dir / LATENCY_JSON).read_text())
    names = captured["names"]
    # base and stra are timed by name, as ever; gated and stra_g4 as the modules their runs train
    assert names[0] == "fer_resnet" and names[3] == "fer_resnet_stra" and captured["baseline"] == "fer_resnet"
    gated, stra_g4 = names[1], names[2]
    assert isinstance(gated, torch.nn.Module) and isinstance(stra_g4, torch.nn.Module)
    assert type(gated.layer4[0].conv2).__name__ == "Inserted"  # the conv kept, ECA after it
    assert type(gated.layer4[0].conv2.inserted).__name__ == "ECA"
    assert {m.groups for m in stra_g4.modules() if type(m).__name__ == "ModeAttention"} == {4}
    assert gated.in_chans == 1 and captured["input_size"] == (16, 16)
    rows = timing["variants"]
    assert {name: rows[name]["median_ms"] for name in rows} == {"base": 1.0, "gated": 2.0, "stra_g4": 3.0, "stra": 4.0}
    assert rows["gated"]["model"] == "fer_resnet" and rows["gated"]["model_overrides"] == {"replace": {"layer4.*.conv2": "eca"}}
    assert rows["stra_g4"]["model_overrides"] == {"groups": 4} and "model_overrides" not in rows["stra"]
    assert "timed without" not in json.dumps(timing)
    assert timing["settings"] == latency_settings(plan)  # what decides whether to time again


def test_settings_change_with_a_variants_overrides_only_when_it_has_some(tmp_path):
    plain = latency_settings(_plan(tmp_path, ""))
    assert "variant_overrides" not in plain  # a suite without overrides keeps the settings it had
    changed = latency_settings(_plan(tmp_path, VARIANTS))
    assert changed["variant_overrides"] == {"gated": {"replace": {"layer4.*.conv2": "eca"}}, "stra_g4": {"groups": 4}}
    again = latency_settings(_plan(tmp_path, VARIANTS.replace("groups = 4", "groups = 2")))
    assert again["variant_overrides"]["stra_g4"] == {"groups": 2}


def test_the_variant_row_is_a_real_timing_of_its_own_module(tmp_path):
    """Really timed, tiny: the gated variant and the baseline are the same registered model, yet each
    has its own row; FER's one-channel input reaches both."""
    plan = _plan(tmp_path, VARIANTS.split("[[variants]]\nname = \"stra_g4\"")[0])
    time_suite(plan, SuiteListener())
    timing = json.loads((plan.out_dir / LATENCY_JSON).read_text())
    assert "error" not in timing, timing.get("error")
    base, gated = timing["variants"]["base"], timing["variants"]["gated"]
    assert base["ratio_to_baseline"] == 1.0 and len(gated["ratio_rounds"]) == 3
    assert gated["median_ms"] > 0 and gated["ratio_rounds"] != [1.0] * 3  # its own row, not the baseline's
    assert gated["input"] == "16x16"

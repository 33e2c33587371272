"""The user cache of complexity entries for models outside the shipped table, and the table's check."""

from __future__ import annotations

import json

import pytest

from strabench.measure import golden

USER_MODULE = '''
from torch import nn


def build(**kw):
    """A tiny user model."""
    return nn.Sequential(nn.Conv2d(3, WIDTH, 3, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, 4))


build.default_input = (3, 16, 16)
WIDTH = {width}
'''


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """``usermodels_<n>:build``, importable from tmp_path; returns (reference, module file)."""
    import sys

    name = f"usermodels_{abs(hash(str(tmp_path))) % 10**8}"
    source = tmp_path / f"{name}.py"
    source.write_text(USER_MODULE.format(width=8))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:build", source
    sys.modules.pop(name, None)


def _expected(width: int) -> dict:
    """By hand: 3x3 conv, 3->width channels, 14x14 outputs; linear width->4 (+bias)."""
    macs = 14 * 14 * width * 3 * 9 + width * 4 + 4  # the paper convention counts the linear's bias too
    return {"input": [3, 16, 16], "params": 3 * 9 * width + width * 4 + 4, "macs_paper": macs}


def test_an_entry_is_computed_once_then_read_from_the_cache(user_model, tmp_path, monkeypatch):
    ref, _ = user_model
    cache = tmp_path / "cache" / "complexity.json"
    first = golden.complexity_table([ref], cache=cache)
    assert first[ref]["input"] == [3, 16, 16]
    assert first[ref]["params"] == _expected(8)["params"]
    stored = json.loads(cache.read_text())
    assert set(stored[ref]) == {"input", "params", "macs_paper", "fingerprint"}

    def no_build(name):
        raise AssertionError(f"{name} was built although its entry is cached")

    monkeypatch.setattr(golden, "compute_entry", no_build)
    assert golden.complexity_table([ref], cache=cache) == first


def test_macs_of_the_user_model_follow_the_paper_convention(user_model, tmp_path):
    ref, _ = user_model
    entry = golden.complexity_table([ref], cache=tmp_path / "c.json")[ref]
    assert entry == _expected(8)


def test_an_edited_builder_is_counted_afresh(user_model, tmp_path, monkeypatch):
    ref, source = user_model
    cache = tmp_path / "complexity.json"
    golden.complexity_table([ref], cache=cache)
    before = json.loads(cache.read_text())[ref]["fingerprint"]
    source.write_text(USER_MODULE.format(width=16))
    calls = []
    real = golden.compute_entry
    monkeypatch.setattr(golden, "compute_entry", lambda name: calls.append(name) or real(name))
    golden.complexity_table([ref], cache=cache)
    assert calls == [ref]
    assert json.loads(cache.read_text())[ref]["fingerprint"] != before


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '["a list"]',
        '{"REF": {"input": [3, 16, 16], "params": "12", "macs_paper": 5, "fingerprint": "FP"}}',
        '{"REF": {"input": [3, 16], "params": 12, "macs_paper": 5, "fingerprint": "FP"}}',
        '{"REF": {"input": [3, 16, 16], "params": 12, "macs_paper": 5, "fingerprint": "FP", "builder": "os:system"}}',
        '{"REF": {"input": [3, 16, 16], "params": 12, "macs_paper": 5, "fingerprint": "other"}}',
    ],
)
def test_a_damaged_or_foreign_entry_is_recomputed(user_model, tmp_path, content):
    ref, _ = user_model
    cache = tmp_path / "complexity.json"
    fingerprint = golden.model_fingerprint(ref)
    cache.write_text(content.replace("REF", ref).replace('"FP"', json.dumps(fingerprint)))
    entry = golden.complexity_table([ref], cache=cache)[ref]
    assert entry["params"] == _expected(8)["params"]  # the bogus 12 was not used
    assert json.loads(cache.read_text())[ref]["params"] == entry["params"]


def test_an_unwritable_cache_costs_only_time(user_model, tmp_path):
    ref, _ = user_model
    blocker = tmp_path / "file"
    blocker.write_text("")
    entry = golden.complexity_table([ref], cache=blocker / "complexity.json")[ref]
    assert entry["params"] == _expected(8)["params"]


def test_built_in_models_never_touch_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(golden, "compute_entry", lambda name: pytest.fail(f"built {name}"))
    cache = tmp_path / "complexity.json"
    table = golden.complexity_table(["resnet50", "resnet50_eca"], cache=cache)
    assert set(table) == {"resnet50", "resnet50_eca"} and not cache.exists()


def test_check_names_missing_stale_and_unknown_entries():
    live = {"a": {"params": 1}, "b": {"params": 2}}
    committed = {"b": {"params": 3}, "c": {"params": 4}}
    assert golden.table_differences(live, committed) == [
        "a: missing", "b: stale ({'params': 3} != {'params': 2})", "c: not a registered model",
    ]
    assert golden.table_differences(live, dict(live)) == []

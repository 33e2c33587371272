"""Blocks say what they are: replace puts a conv-replacing block in the conv's place and a gate after
the module; settings travel as literals; the stride comes from the replaced module itself."""

from __future__ import annotations

import json
import keyword
import math
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.measure.flops import count_macs
from strabench.measure.params import count_params
from strabench.models import blocks
from strabench.models.blocks import BLOCK_SOURCES, BLOCKS, BlockSpec, canonical_block, format_block, parse_block, resolve_block
from strabench.models.replace import Inserted, apply_replacements
from strabench.registry import create_model

runner = CliRunner()
SMALL = {"input_size": (64, 32)}  # resnet50's layer4 at 4x2: the shape-checking forward stays cheap

# What each block of the package is, written out (the reference is this table, not the classes).
EXPECTED_KINDS = {
    "stra": "replace", "local": "replace", "sasa": "replace",
    "se": "insert", "eca": "insert", "mode": "insert", "non_local": "insert",
}


def test_every_block_declares_the_kind_it_has():
    assert set(BLOCKS) == set(EXPECTED_KINDS)
    for name, kind in EXPECTED_KINDS.items():
        module_name, _, attr = BLOCKS[name].partition(":")
        cls = getattr(__import__(module_name, fromlist=[attr]), attr)
        assert cls.__dict__.get("block_kind") == kind, name  # declared on the class itself
        assert resolve_block(name).kind == kind


# --- the text form: NAME(key=value, ...) --------------------------------------------------------------


def test_parse_block_reads_literals():
    assert parse_block("stra") == ("stra", {})
    assert parse_block(" stra( ) ") == ("stra", {})
    assert parse_block("stra(groups=4, border='mask', interaction=False)") == (
        "stra", {"groups": 4, "border": "mask", "interaction": False})
    assert parse_block("x:Y(k=(1, 2), r=-0.5, s=[3, 4])") == ("x:Y", {"k": (1, 2), "r": -0.5, "s": (3, 4)})
    assert parse_block("timm-attn:cbam(rd_ratio=0.25)") == ("timm-attn:cbam", {"rd_ratio": 0.25})


@pytest.mark.parametrize("text", [
    "stra(groups=__import__('os').system('touch pwned'))", "stra(groups=len('ab'))", "stra(groups=x)", "stra(groups=1+1)",
    "stra(4)", "stra(**{'groups': 4})", "stra(groups=lambda: 4)", "stra(groups={'a': 1})", "stra(groups=None)",
    "stra(groups=4", "stra(groups=)", "st ra", "stra(groups=b'4')",
])
def test_parse_block_refuses_what_is_not_a_literal_setting(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        parse_block(text)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


_values = st.recursive(
    st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
              st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda k: not keyword.iskeyword(k)),
                       _values, max_size=4))
def test_format_and_parse_round_trip(settings_):
    name, parsed = parse_block(format_block("stra", settings_))
    assert name == "stra" and parsed == settings_
    assert canonical_block(format_block("stra", settings_)) == format_block("stra", settings_)


@pytest.mark.parametrize("key", ["as", "lambda", "1x", "a-b"])
def test_a_setting_that_is_not_an_argument_name_is_refused_in_one_line(key):
    with pytest.raises(ConfigError) as info:
        blocks.block_from_table({"block": "stra", key: 1}, "variants.x.replace")
    assert "not a keyword" in str(info.value) and "\n" not in str(info.value)


def test_canonical_text_ignores_spacing_and_order():
    assert canonical_block("stra( kernel_size = 5 ,groups=4 )") == "stra(groups=4, kernel_size=5)"
    assert blocks.block_from_table({"block": "stra", "kernel_size": 5, "groups": 4}, "r") == "stra(groups=4, kernel_size=5)"


# --- kinds in a model -------------------------------------------------------------------------------


def test_a_gate_is_inserted_after_the_conv_which_stays():
    plain = create_model("resnet50", **SMALL)
    model = create_model("resnet50", replace={"layer4.*.conv2": "eca"}, **SMALL)
    for i in range(3):
        wrapped = model.layer4[i].conv2
        assert isinstance(wrapped, Inserted)
        conv = wrapped.original
        assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.in_channels == conv.out_channels == 512
        assert type(wrapped.inserted).__name__ == "ECA"
    # ECA's kernel size for C = 512 (ECA-Net Eq. 12, gamma 2, b 1): the odd number nearest log2(C)/2 + 1/2
    t = int(abs(math.log2(512) / 2 + 0.5))
    k = t if t % 2 else t + 1
    assert count_params(model) == count_params(plain) + 3 * k
    keys = set(model.state_dict())
    assert "layer4.0.conv2.original.weight" in keys and "layer4.0.conv2.inserted.conv.weight" in keys
    x = torch.randn(1, 512, 4, 2)
    wrapped = model.layer4[1].conv2.eval()
    conv, gate = wrapped.original, wrapped.inserted
    y = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    pooled = y.mean(dim=(2, 3)).view(1, 1, 512)
    weight = gate.conv.weight.view(1, 1, k)
    expected = y * torch.sigmoid(torch.nn.functional.conv1d(pooled, weight, padding=k // 2)).view(1, 512, 1, 1)
    torch.testing.assert_close(wrapped(x), expected)


def test_mode_after_the_conv_is_the_papers_conv_plus_mode():
    inserted = create_model("resnet50", replace={"layer4.*.conv2": "mode"})
    registered = create_model("resnet50_conv_mode")
    assert count_params(inserted) == count_params(registered)
    assert count_macs(inserted, (3, 64, 32)).total == count_macs(registered, (3, 64, 32)).total


def test_settings_reach_the_block():
    model = create_model("resnet50", replace={"layer4.*.conv2": "stra(groups=4, kernel_size=5)"}, **SMALL)
    local = model.layer4[0].conv2.local
    assert (local.groups, local.kernel_size) == (4, 5)
    assert count_params(model) == count_params(create_model("resnet50_stra", groups=4, kernel_size=5, **SMALL))


def test_odd_size_stride_two_replacement_on_fer_resnet():
    """fer_resnet's layer4.0.conv2 maps 11x11 to 6x6 with stride 2: the stride is the conv's, not 11 // 6."""
    plain = create_model("fer_resnet")
    shapes = {}
    plain.layer4[0].conv2.register_forward_hook(lambda m, i, o: shapes.update(x=i[0].shape, y=o.shape))
    plain.eval()(torch.zeros(1, 1, 44, 44))
    assert tuple(shapes["x"][2:]) == (11, 11) and tuple(shapes["y"][2:]) == (6, 6)
    model = create_model("fer_resnet", replace={"layer4.*.conv2": "stra"})
    strides = [model.layer4[i].conv2.local.stride for i in range(3)]
    assert strides == [2, 1, 1]
    assert model.eval()(torch.zeros(2, 1, 44, 44)).shape == (2, 7)
    from strabench.layers.stra import StRA

    conv = 512 * 512 * 9
    assert count_params(model) == count_params(plain) - 3 * conv + 3 * count_params(StRA(512))


@pytest.mark.parametrize("replace,message", [
    ({"layer4.0.conv1": "stra"}, "layer4.0.conv1: stra keeps the channel count (C -> C), and the module it would replace maps 1024 -> 512 channels"),
    ({"layer4.*.conv2": "stra(modes=3)"}, "block 'stra(modes=3)' has no setting 'modes'; its settings: border, groups, interaction, kernel_size"),
    ({"layer4.*.conv2": "stra(stride=2)"}, "'stride' is not a setting"),
    ({"layer4.*.conv2": "stra(groups=7)"}, "cannot build stra(groups=7) for layer4.0.conv2 (512 -> 512 channels, stride 1)"),
    ({"layer4.*.conv2": "stra(groups='8')"}, "cannot build stra(groups='8') for layer4.0.conv2"),
    ({"layer4.*.conv2": "eca", "layer4.0": "se"}, "layer4.0.conv2 lies inside layer4.0"),
    ({"layer4.*.conv2": "torch.nn:Identity"}, 'torch.nn:Identity does not say what kind of block it is: give the class block_kind = "replace"'),
    ({"layer4.*.conv2": "nosuch-src:x"}, "unknown block 'nosuch-src:x'"),
    ({"head": "se"}, "blocks go where (B, C, H, W) maps do"),
    ({"layer4.*.conv2": "mode(groups=7)"}, "cannot build mode(groups=7) for layer4.0.conv2 (after it, 512 channels)"),
])
def test_refusals_are_one_line(replace, message):
    with pytest.raises(ConfigError) as info:
        create_model("resnet50", replace=replace, **SMALL)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_module_without_a_stride_that_resizes_is_refused():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1)), nn.ReLU())
    with pytest.raises(ConfigError, match=r"replace: 0 maps \(8, 8\) to \(4, 4\) but has no `stride` attribute"):
        apply_replacements(model, {"0": "local(groups=2)"}, (8, 8, 8))
    two = nn.Sequential(nn.Conv2d(8, 8, 2, stride=2), nn.ReLU())  # 7x7 -> 3x3, a 3x3 window of stride 2 gives 4x4
    with pytest.raises(ConfigError, match=r"local\(groups=2\) maps 0's input \(1, 8, 7, 7\) to \(1, 8, 4, 4\), but 0 gives \(1, 8, 3, 3\)"):
        apply_replacements(two, {"0": "local(groups=2)"}, (8, 7, 7))
    same = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)), nn.ReLU())
    apply_replacements(same, {"0": "local(groups=2)"}, (8, 8, 8))
    assert type(same[0]).__name__ == "LocalAttention"


# --- your own block, and block sources ----------------------------------------------------------------


@pytest.fixture
def user_blocks(tmp_path, monkeypatch):
    (tmp_path / "myblocks.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Gate(nn.Module):
            block_kind = "insert"

            def __init__(self, channels, *, scale=1.0):
                super().__init__()
                self.scale = scale
                self.w = nn.Parameter(torch.ones(channels))

            def forward(self, x):
                return x * self.w.view(1, -1, 1, 1) * self.scale

        class Mix(nn.Module):
            block_kind = "replace"

            def __init__(self, channels, *, out_channels=None, stride=1, bias=False):
                super().__init__()
                self.conv = nn.Conv2d(channels, out_channels or channels, 1, stride=stride, bias=bias)

            def forward(self, x):
                return self.conv(x)

        class Plain(nn.Module):
            def __init__(self, channels):
                super().__init__()
    '''))
    monkeypatch.chdir(tmp_path)
    yield "myblocks"
    sys.modules.pop("myblocks", None)


def test_user_blocks_declare_their_kind(user_blocks):
    model = create_model("resnet50", replace={"layer4.0.conv1": "myblocks:Mix(bias=True)",
                                              "layer4.*.conv3": "myblocks:Gate(scale=0.5)"}, **SMALL)
    mix = model.layer4[0].conv1
    assert mix.conv.in_channels == 1024 and mix.conv.out_channels == 512 and mix.conv.bias is not None
    assert isinstance(model.layer4[2].conv3, Inserted) and model.layer4[2].conv3.inserted.scale == 0.5
    strided = create_model("resnet50", replace={"layer3.0.conv2": "myblocks:Mix"}, **SMALL)
    assert strided.layer3[0].conv2.conv.stride == (2, 2)  # layer3's first block halves the map
    with pytest.raises(ConfigError, match='myblocks:Plain does not say what kind of block it is'):
        create_model("resnet50", replace={"layer4.*.conv2": "myblocks:Plain"}, **SMALL)


def test_a_registered_block_source_resolves_name_and_settings(monkeypatch):
    seen = []

    def source(name: str, settings_: dict) -> BlockSpec:
        seen.append((name, dict(settings_)))
        return BlockSpec(f"demo:{name}", "insert", lambda channels: nn.BatchNorm2d(channels, **settings_))

    monkeypatch.setitem(BLOCK_SOURCES, "demo", source)
    model = create_model("resnet50", replace={"layer4.*.conv2": "demo:bn(eps=0.5)"}, **SMALL)
    assert seen == [("bn", {"eps": 0.5})]
    assert model.layer4[0].conv2.inserted.eps == 0.5
    with pytest.raises(ConfigError, match="demo:NAME"):
        resolve_block("nosuch:thing")
    with pytest.raises(ValueError, match="already registered"):
        blocks.register_block_source("demo", source)


def test_a_block_source_named_by_path_is_imported_when_used(monkeypatch, user_blocks, tmp_path):
    (tmp_path / "mysource.py").write_text(textwrap.dedent('''
        from strabench.models.blocks import class_block
        from myblocks import Gate

        def resolve(name, settings):
            return class_block(f"gates:{name}", Gate, settings, kind="insert")
    '''))
    monkeypatch.setitem(BLOCK_SOURCES, "gates", "mysource:resolve")
    try:
        assert resolve_block("gates:any(scale=2.0)").factory(4).scale == 2.0
        with pytest.raises(ConfigError, match="block 'gates:any' has no setting 'size'; its settings: scale"):
            resolve_block("gates:any(size=2)")
    finally:
        sys.modules.pop("mysource", None)


# --- the CLI --------------------------------------------------------------------------------------------


def test_cli_settings_travel_with_replace():
    result = runner.invoke(app, ["flops", "resnet50", "--input", "64x32", "--counter", "paper", "--json",
                                 "--replace", "layer4.*.conv2=stra(groups=4, kernel_size=5)"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)
    stra = create_model("resnet50_stra", groups=4, kernel_size=5, **SMALL)
    assert ours["params"] == count_params(stra)
    assert ours["macs"]["paper"] == count_macs(stra, (3, 64, 32), "paper").total
    bad = runner.invoke(app, ["flops", "resnet50", "--replace", "layer4.*.conv2=stra(groups=os.sep)"])
    assert bad.exit_code == 2
    assert "setting 'groups' must be a literal" in bad.output and "Traceback" not in bad.output


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """docs/blocks.md "Declaring the kind": its module and its two commands, as written."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "blocks.md").read_text()
    section = doc.split("\n### Declaring the kind\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (commands,) = re.findall(r"```\n(strabench .*?)```", section, re.S)
    (tmp_path / "myblocks.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    try:
        for line in commands.strip().splitlines():
            args = shlex.split(line)[1:] + ["--input", "64x32", "--counter", "paper", "--json"]
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (line, result.output)
        model = create_model("resnet50", replace={"layer4.*.conv2": "myblocks:Gate(init=0.5)"}, **SMALL)
        assert float(model.layer4[0].conv2.inserted.scale[0]) == 0.5
    finally:
        sys.modules.pop("myblocks", None)

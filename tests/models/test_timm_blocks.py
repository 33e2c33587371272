"""timm's attention layers as blocks: gates inserted after a module, self-attention layers in its
place, every size constraint refused before anything is built, in one line that names it.

Small host models (32 channels, 8x4 maps) keep this cheap; ResNet-50 appears once, through the CLI.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.models.blocks import BLOCK_SOURCES, BlockSpec, canonical_block, resolve_block
from strabench.models.replace import Inserted, apply_replacements

timm = pytest.importorskip("timm")
from timm.layers.create_attn import get_attn  # noqa: E402  (after the skip)

from strabench.models.timm_blocks import TIMM_ATTENTION  # noqa: E402

runner = CliRunner()
C, H, W = 32, 8, 4

# What each name is, written out from timm's docs (create_attn's comments: "Lightweight attention
# modules ... added to existing network architecture blocks" vs modules that "replace some of the
# existing workhorse convs ... accept a stride argument"): the reference, not the table under test.
EXPECTED_KINDS = {
    "se": "insert", "ese": "insert", "eca": "insert", "ceca": "insert", "cbam": "insert", "lcbam": "insert",
    "gc": "insert", "gca": "insert", "ge": "insert", "coord": "insert", "scoord": "insert", "ela": "insert",
    "strip": "insert", "nl": "insert",
    "sk": "replace", "splat": "replace", "halo": "replace", "lambda": "replace", "bottleneck": "replace",
    "attn2d": "replace", "mqa": "replace",
}
#: Settings that fit a 32-channel 8x4 map (and ResNet-50's 512-channel 4x2 layer4 at 64x32).
FITTING = {name: f"timm-attn:{name}" for name in EXPECTED_KINDS}
FITTING.update({
    "halo": "timm-attn:halo(block_size=2, halo_size=1)",
    "ge": "timm-attn:ge(use_mlp=False)",  # timm 1.0.31's GatherExcite cannot build its MLP (see docs/attention-zoo.md)
    "attn2d": "timm-attn:attn2d(num_heads=4)",
})


class Host(nn.Module):
    """stem -> conv2 (the module blocks replace or follow) -> relu: the shape of a bottleneck's 3x3."""

    def __init__(self, channels: int = C, out_channels: int | None = None, stride: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 1)
        self.conv2 = nn.Conv2d(channels, out_channels or channels, 3, stride=stride, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.stem(x)))


def put(block: str, *, size: tuple[int, int] = (H, W), **host) -> Host:
    model = Host(**host)
    apply_replacements(model, {"conv2": block}, (3, *size))
    return model


def test_every_name_is_the_class_timm_gives_it_with_the_kind_it_has():
    from timm.layers.attention2d import Attention2d, MultiQueryAttention2d

    assert {name: entry.kind for name, entry in TIMM_ATTENTION.items()} == EXPECTED_KINDS
    others = {"attn2d": Attention2d, "mqa": MultiQueryAttention2d}
    for name, entry in TIMM_ATTENTION.items():
        cls = getattr(sys.modules[entry.module] if entry.module in sys.modules else __import__(entry.module, fromlist=["_"]), entry.cls)
        made = others.get(name) or get_attn(name)  # timm's own factory is the reference
        if hasattr(made, "func"):  # create_attn's partials: gca = GlobalContext(fuse_add=True, fuse_scale=False)
            assert (made.func, dict(made.keywords)) == (cls, dict(entry.preset)), name
        else:
            assert made is cls and not entry.preset, name
        assert resolve_block(FITTING[name]).kind == EXPECTED_KINDS[name]


@pytest.mark.parametrize("name", list(EXPECTED_KINDS))
def test_each_block_fits_a_position_and_trains(name):
    model = put(FITTING[name])
    entry = TIMM_ATTENTION[name]
    if entry.kind == "insert":
        assert isinstance(model.conv2, Inserted) and isinstance(model.conv2.original, nn.Conv2d)
        assert type(model.conv2.inserted).__name__ == entry.cls
    else:
        assert type(model.conv2).__name__ == entry.cls
    model.train()
    x = torch.randn(2, 3, H, W)
    out = model(x)
    assert out.shape == (2, C, H, W)
    out.square().mean().backward()
    block = model.conv2.inserted if entry.kind == "insert" else model.conv2
    params = list(block.parameters())  # ge(use_mlp=False) has none
    assert not params or any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("name,block", [
    ("sk", "timm-attn:sk"), ("splat", "timm-attn:splat"), ("halo", "timm-attn:halo(block_size=2, halo_size=1)"),
    ("halo_pooled", "timm-attn:halo(block_size=2, halo_size=1, avg_down=True)"),
    ("lambda", "timm-attn:lambda"), ("bottleneck", "timm-attn:bottleneck"),
])
def test_strided_replacements_halve_the_map_like_the_conv(name, block):
    model = put(block, stride=2).eval()
    assert model(torch.zeros(1, 3, H, W)).shape == (1, C, H // 2, W // 2)


def test_a_wider_output_is_built_with_the_blocks_own_keyword():
    model = put("timm-attn:bottleneck", out_channels=2 * C)
    assert model.conv2.qkv.in_channels == C and model(torch.zeros(1, 3, H, W)).shape == (1, 2 * C, H, W)


def test_bottleneck_attention_is_built_for_the_map_the_model_gives_there():
    small, large = put("timm-attn:bottleneck", size=(4, 2)), put("timm-attn:bottleneck", size=(16, 8))
    assert (small.conv2.pos_embed.height, small.conv2.pos_embed.width) == (4, 2)
    assert (large.conv2.pos_embed.height, large.conv2.pos_embed.width) == (16, 8)


@pytest.mark.parametrize("block,host,size,message", [
    ("timm-attn:halo", {}, (H, W), "timm-attn:halo does not fit a 8x4 map of 32 channels: block_size=8 must divide the 8x4 map "
     "(the blocks tile it); block sizes that fit: 1, 2, 4"),
    ("timm-attn:halo(block_size=2, num_heads=5)", {}, (H, W), "num_heads=5 must divide the output width 32"),
    ("timm-attn:halo(block_size=3)", {}, (6, 6), None),
    ("timm-attn:halo(block_size=3)", {"stride": 2}, (3, 3), "stride 2 is a 2x2 average pool here, which needs an even map, got 3x3"),
    ("timm-attn:bottleneck", {"stride": 2}, (7, 4), "stride 2 is a 2x2 average pool here, which needs an even map, got 7x4"),
    ("timm-attn:bottleneck(num_heads=3)", {}, (H, W), "num_heads=3 must divide the output width 32 (choose from 1, 2, 4, 8, 16, 32)"),
    ("timm-attn:lambda", {"out_channels": 64}, (H, W), "keeps the channel count (C -> C), and the module it would replace maps 32 -> 64"),
    ("timm-attn:lambda(r=4)", {}, (H, W), "r must be odd"),
    ("timm-attn:attn2d", {"channels": 48}, (H, W), "num_heads=32 must divide the attention width 48"),  # timm's default heads
    ("timm-attn:attn2d(num_heads=4)", {"stride": 2}, (H, W), "timm-attn:attn2d(num_heads=4) takes no stride, and the module it would replace has stride 2"),
    ("timm-attn:mqa(query_strides=3)", {}, (H, W), "query_strides=3 must divide the 8x4 map"),
    ("timm-attn:sk(kernel_size=(3, 5, 7))", {}, (H, W), "the 3 paths split the input: 3 must divide the input width 32"),
    ("timm-attn:sk(kernel_size=4)", {}, (H, W), "kernel_size must be odd and >= 3 per path"),
    ("timm-attn:splat(radix=3)", {}, (H, W), "groups * radix = 3 must divide the input width 32"),
    ("timm-attn:cbam(spatial_kernel_size=4)", {}, (H, W), "spatial_kernel_size must be odd"),
    ("timm-attn:ge(extent=3, use_mlp=False)", {}, (H, W), "extent must be 0 (global) or an even number, got 3"),
])
def test_a_block_that_cannot_fit_is_refused_before_it_is_built(block, host, size, message, monkeypatch):
    built = []
    for entry in TIMM_ATTENTION.values():  # nothing of timm's may be constructed for a refused block
        module = __import__(entry.module, fromlist=["_"])
        cls = getattr(module, entry.cls)
        monkeypatch.setattr(module, entry.cls, type(cls.__name__, (cls,), {"__init__": _recording(cls, built)}))
    if message is None:
        put(block, size=size, **host)
        assert built
        return
    with pytest.raises(ConfigError) as raised:
        put(block, size=size, **host)
    text = str(raised.value)
    assert message in text and "\n" not in text and text.startswith("replace: conv2")
    assert built == []


def _recording(cls: type, built: list):
    import functools

    @functools.wraps(cls.__init__)  # keeps the signature the settings are checked against
    def __init__(self, *args, **kwargs):  # noqa: N807
        built.append(cls.__name__)
        cls.__init__(self, *args, **kwargs)

    return __init__


def test_settings_are_timms_keywords_checked_when_the_name_is_read():
    assert canonical_block("timm-attn:halo( halo_size=1,block_size=2 )") == "timm-attn:halo(block_size=2, halo_size=1)"
    assert put("timm-attn:se(rd_ratio=0.5)").conv2.inserted.fc1.out_channels == 16
    assert put("timm-attn:sk(kernel_size=(3, 3))").conv2.num_paths == 2  # a tuple reaches timm as the list it wants
    with pytest.raises(ConfigError, match=r"has no setting 'bogus'; timm's SEModule takes: act_layer, add_maxpool, bias"):
        resolve_block("timm-attn:se(bogus=1)")
    for key in ("stride", "dim_out", "feat_size", "channels", "out_channels", "device"):
        with pytest.raises(ConfigError, match=f"'{key}' is not a setting: replace takes it"):
            resolve_block(f"timm-attn:halo({key}=2)")
    with pytest.raises(ConfigError, match=r"'fuse_add' is fixed by the name 'gca' \(fuse_add=True\)"):
        resolve_block("timm-attn:gca(fuse_add=False)")
    with pytest.raises(ConfigError, match="unknown block timm-attn:hallo; did you mean timm-attn:halo"):
        resolve_block("timm-attn:hallo")


def test_a_timm_bug_is_one_line_not_a_traceback():
    """timm 1.0.31's GatherExcite passes ``*dd`` positionally into ConvMlp: a TypeError at build time."""
    with pytest.raises(ConfigError, match=r"^replace: cannot build timm-attn:ge for conv2 \(after it, 32 channels\): "):
        put("timm-attn:ge")


def test_without_timm_one_line_says_how_to_install_it(monkeypatch):
    for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import timm...` now fails as if it were absent
    with pytest.raises(ConfigError, match=r"^timm-attn:cbam needs timm: pip install 'strabench\[timm\]'$"):
        resolve_block("timm-attn:cbam")


def test_a_timm_without_the_layer_says_to_upgrade(monkeypatch):
    import timm.layers.coord_attn as coord

    monkeypatch.delattr(coord, "CoordAttn")
    with pytest.raises(ConfigError, match=rf"^timm-attn:coord: timm {timm.__version__} has no timm.layers.coord_attn.CoordAttn; upgrade timm"):
        resolve_block("timm-attn:coord")


def test_a_sized_spec_gets_the_map_it_will_see(monkeypatch):
    """The ``sized`` contract without timm: replace gives the replaced module's input map, insert the output."""
    seen = []

    def source(name: str, settings: dict) -> BlockSpec:
        if name == "gate":
            return BlockSpec("probe:gate", "insert", lambda c, *, size: seen.append(("insert", c, size)) or nn.Identity(), sized=True)
        return BlockSpec("probe:conv", "replace",
                         lambda i, o, s, *, size: seen.append(("replace", i, o, s, size)) or nn.Conv2d(i, o, 3, s, 1), sized=True)

    monkeypatch.setitem(BLOCK_SOURCES, "probe", source)
    put("probe:conv", stride=2, out_channels=16)
    put("probe:gate", stride=2)
    assert seen == [("replace", C, 16, 2, (H, W)), ("insert", C, (H // 2, W // 2))]


def test_flops_cli_counts_a_timm_block_in_resnet50():
    result = runner.invoke(app, ["flops", "resnet50", "--input", "64x32", "--json",
                                 "--replace", "layer4.*.conv2=timm-attn:halo(block_size=2, halo_size=1)"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["macs"]) == {"paper", "fvcore", "ptflops"}
    assert report["uncounted"].get("fvcore", []) == [] and report["uncounted"].get("ptflops", []) == []
    assert any("HaloAttn" in item for item in report["uncounted"]["paper"])  # attention products: outside the paper's convention
    refused = runner.invoke(app, ["flops", "resnet50", "--input", "64x32", "--replace", "layer4.*.conv2=timm-attn:halo"])
    assert refused.exit_code == 2 and "block_size=8 must divide the 4x2 map" in refused.output
    assert "Traceback" not in refused.output


REID_TINY = [
    "--task", "reid", "--epochs", "1", "--input", "32x16", "--batch", "8", "--device", "cpu", "--workers", "0",
    "--set", "data_sizes={ num_train_ids = 4, train_images_per_id = 4, num_test_ids = 4, query_cams_per_id = 1, "
    "gallery_images_per_id = 2, num_distractors = 2, num_junk = 0, height = 32, width = 16 }",
]


@pytest.mark.slow
def test_train_and_eval_resnet50_with_a_block_built_for_its_map(tmp_path):
    """Bottleneck attention is built for the map training gives it (32x16 input: layer4 at 2x1, not the
    16x8 of the model's default input), and evaluation from the checkpoint builds it there again."""
    out = tmp_path / "bot"
    trained = runner.invoke(app, ["train", "resnet50", *REID_TINY, "--replace", "layer4.*.conv2=timm-attn:bottleneck",
                                  "--out", str(out), "--json"])
    assert trained.exit_code == 0, trained.output
    from strabench.train.checkpoint import load_checkpoint

    weights = load_checkpoint(out / "checkpoint.pt")["model"]
    assert tuple(weights["layer4.0.conv2.pos_embed.height_rel"].shape)[0] == 2 * 2 - 1  # relative positions of 2 rows
    evaluated = runner.invoke(app, ["eval", "resnet50", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"] == pytest.approx(json.loads((out / "result.json").read_text())["metrics"])


def test_the_docs_table_lists_every_block_with_its_kind_and_class():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "attention-zoo.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:4]]
            for line in doc.splitlines() if line.startswith("| `")}
    assert set(rows) == set(TIMM_ATTENTION)
    for name, (kind, cls) in rows.items():
        entry = TIMM_ATTENTION[name]
        assert kind == ("gate" if entry.kind == "insert" else "replace") and cls.strip("`").startswith(entry.cls), name

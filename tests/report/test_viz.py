"""strabench viz: mode masks and local-attention magnitudes per block, one PNG each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from strabench.cli import app
from strabench.registry import create_model
from strabench.report.attention_maps import capture_maps

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    picture = np.zeros((96, 48, 3), dtype=np.uint8)
    picture[10:50, 12:36] = (200, 40, 40)  # a "shirt"
    picture[50:90, 14:34] = (30, 30, 160)  # "trousers"
    picture += rng.integers(0, 30, picture.shape, dtype=np.uint8)
    path = tmp_path / "person.jpg"
    Image.fromarray(picture).save(path)
    return path


def save_weights(model_name: str, path: Path, *, strabench_format: bool) -> Path:
    model = create_model(model_name, num_classes=5, **({"input_size": (16, 16)} if model_name.startswith("fer") else {}))
    if strabench_format:
        from strabench.train.checkpoint import save_checkpoint

        save_checkpoint(path, {"model": model.state_dict(), "epoch": 1}, config_hash="0" * 12)
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("strabench_format", [True, False], ids=["checkpoint", "state_dict"])
def test_viz_writes_one_png_per_stra_block(tmp_path: Path, image: Path, strabench_format: bool) -> None:
    weights = save_weights("fer_resnet_stra", tmp_path / "checkpoint.pt", strabench_format=strabench_format)
    out = tmp_path / "viz"
    result = CliRunner().invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(weights), "--image", str(image), "--out", str(out), "--input", "16x16"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"fer_resnet_stra.layer4.{i}.conv2.png" for i in range(3)]
    assert all((out / name).read_bytes().startswith(PNG) for name in pngs)


def test_captured_maps_are_the_blocks_masks(image: Path) -> None:
    model = create_model("resnet50_stra").eval()
    x = torch.randn(1, 3, 64, 32)
    blocks = capture_maps(model, x)
    assert [b.name for b in blocks] == [f"layer4.{i}.conv2" for i in range(3)]
    first = blocks[0]
    assert first.masks.shape == (8, 4, 2) and first.local.shape == (8, 4, 2)
    np.testing.assert_allclose(first.masks.reshape(8, -1).sum(axis=1), 1.0, rtol=1e-5)  # softmax over positions
    # reference: run the block by hand from layer4.0's input
    with torch.no_grad():
        h = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))))
        block = model.layer4[0]
        inner = block.relu(block.bn1(block.conv1(h)))
        local_out = block.conv2.local(inner)
        expected_masks = block.conv2.mode.masks(local_out)[0].numpy()
        expected_local = local_out.reshape(1, 8, -1, 4, 2).norm(dim=2)[0].numpy()
    np.testing.assert_allclose(first.masks, expected_masks, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(first.local, expected_local, rtol=1e-5, atol=1e-6)


def test_viz_of_local_only_model_has_local_maps_only(image: Path) -> None:
    blocks = capture_maps(create_model("resnet50_local").eval(), torch.randn(1, 3, 64, 32))
    assert len(blocks) == 3 and all(b.masks is None and b.local is not None for b in blocks)


def test_viz_errors_are_one_line(tmp_path: Path, image: Path) -> None:
    weights = save_weights("fer_resnet", tmp_path / "w.pt", strabench_format=False)
    runner = CliRunner()
    no_attention = runner.invoke(app, ["viz", "fer_resnet", "--checkpoint", str(weights), "--image", str(image), "--out", str(tmp_path / "o"), "--input", "16x16"])
    assert no_attention.exit_code == 2 and "no ModeAttention or LocalAttention" in no_attention.output
    wrong_model = runner.invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(weights), "--image", str(image), "--out", str(tmp_path / "o"), "--input", "16x16"])
    assert wrong_model.exit_code == 2 and "does not fit fer_resnet_stra" in wrong_model.output
    no_image = runner.invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(weights), "--image", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")])
    assert no_image.exit_code == 2 and "image not found" in no_image.output


def test_viz_builds_the_model_as_the_checkpoint_was_trained(tmp_path: Path, image: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Input size and model settings come from the checkpoint's config; every tensor, the
    classifier included, loads strictly, so nothing is reported missing or unexpected."""
    from strabench.train.checkpoint import save_checkpoint
    from strabench.train.saved import model_from_checkpoint as load_model

    overrides = {"layers": [1, 1, 1, 1], "feature_dim": 32}
    trained = create_model("resnet50_stra", num_classes=7, layers=(1, 1, 1, 1), feature_dim=32)
    config = {"model": "resnet50_stra", "task": "reid", "input_size": [64, 32], "model_overrides": overrides}
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": trained.state_dict(), "epoch": 1, "config": config}, config_hash="0" * 12)
    with caplog.at_level("WARNING"):
        model, task, size = load_model("resnet50_stra", path)
    assert (task, size) == ("reid", (64, 32)) and not caplog.records
    assert len(model.layer4) == 1 and model.classifier.out_features == 7
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, trained.state_dict()[name])
    assert load_model("resnet50_stra", path, (128, 64))[2] == (128, 64)  # --input still wins
    out = tmp_path / "viz"
    result = CliRunner().invoke(app, ["viz", "resnet50_stra", "--checkpoint", str(path), "--image", str(image), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert [Path(p).name for p in __import__("json").loads(result.stdout)] == ["resnet50_stra.layer4.0.conv2.png"]
    with Image.open(out / "resnet50_stra.layer4.0.conv2.png") as png:
        assert png.width > png.height  # one panel per group plus colour bars, drawn at 64x32


def test_one_colour_scale_per_row(monkeypatch: pytest.MonkeyPatch, image: Path) -> None:
    """Every panel of a row is drawn with the same limits (0 to the row's maximum), and each row has a colour bar."""
    from matplotlib.figure import Figure

    from strabench.report import attention_maps

    seen: list[tuple] = []
    original = Figure.colorbar

    def spy(self, mappable, *args, **kwargs):
        seen.append(tuple(float(v) for v in mappable.get_clim()))
        return original(self, mappable, *args, **kwargs)

    monkeypatch.setattr(Figure, "colorbar", spy)
    masks = np.random.default_rng(0).dirichlet(np.ones(8), size=4).T.reshape(4, 4, 2).astype(np.float32)  # 4 groups
    local = np.abs(np.random.default_rng(1).normal(size=(4, 4, 2))).astype(np.float32) * 10
    picture = Image.open(image).convert("RGB").resize((32, 64))
    png = attention_maps.draw_block(attention_maps.BlockMaps("b", masks=masks, local=local), picture, "t")
    assert png.startswith(PNG)
    assert seen == [(0.0, pytest.approx(float(local.max()))), (0.0, pytest.approx(float(masks.max())))]

"""`strabench viz` without --image: the first test image of the checkpoint's own run data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from strabench.cli import app
from strabench.data.tasks import build_task_data
from strabench.registry import create_model
from strabench.train.config import TrainConfig, resolve, to_toml


def make_run(run_dir: Path, model: str, **settings) -> TrainConfig:
    """A run directory as the engine leaves it: config.toml and a strabench checkpoint."""
    from strabench.train.checkpoint import save_checkpoint

    cfg = resolve(TrainConfig(model=model, **settings))
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(to_toml(cfg))
    data = build_task_data(cfg.data, cfg.task, input_size=cfg.input_size, augment=False, seed=cfg.data_seed, sizes=cfg.data_sizes)
    net = create_model(model, task=cfg.task, num_classes=data.num_classes, **({"input_size": cfg.input_size} if cfg.task == "fer" else {}))
    from strabench.train.config import config_to_dict

    save_checkpoint(run_dir / "checkpoint.pt", {"model": net.state_dict(), "epoch": 1, "config": config_to_dict(cfg)}, config_hash="0" * 12)
    return cfg


def test_fer_run_uses_its_first_private_test_image(tmp_path: Path) -> None:
    cfg = make_run(tmp_path / "run", "fer_resnet_stra", input_size=(16, 16),
                   data_sizes={"num_train": 14, "num_public_test": 7, "num_private_test": 7})
    out = tmp_path / "viz"
    result = CliRunner().invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"image: {out / 'input.png'} (first PrivateTest image of synthetic_expressions)" in " ".join(result.stderr.split())
    expected = build_task_data(cfg.data, "fer", input_size=(16, 16), augment=False, seed=0, sizes=cfg.data_sizes).test.images[0]
    assert np.array_equal(np.asarray(Image.open(out / "input.png")), expected)
    assert sorted(p.name for p in out.glob("fer_resnet_stra.*.png")) == [f"fer_resnet_stra.layer4.{i}.conv2.png" for i in range(3)]


def test_reid_run_uses_its_first_query_image(tmp_path: Path) -> None:
    cfg = make_run(tmp_path / "run", "resnet50_stra", input_size=(64, 32),
                   data_sizes={"num_train_ids": 4, "train_images_per_id": 2, "num_test_ids": 3, "num_distractors": 2, "num_junk": 1})
    query = build_task_data(cfg.data, "reid", input_size=(64, 32), augment=False, seed=0, sizes=cfg.data_sizes).query.records[0].path
    result = CliRunner().invoke(app, ["viz", "resnet50_stra", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                                      "--out", str(tmp_path / "viz")])
    assert result.exit_code == 0, result.output
    assert f"image: {query} (first query image of synthetic_reid)" in " ".join(result.stderr.split())
    assert not (tmp_path / "viz" / "input.png").exists(), "a file on disk is used where it is"
    assert len(list((tmp_path / "viz").glob("resnet50_stra.*.png"))) == 3


def test_without_a_run_config_the_image_is_asked_for(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    import torch

    torch.save(create_model("fer_resnet_stra", num_classes=7, input_size=(16, 16)).state_dict(), weights)
    result = CliRunner().invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(weights)])
    assert result.exit_code == 2
    assert "pass --image PATH" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["not = [toml", 'model = "fer_resnet_stra"\n'])
def test_a_bad_run_config_is_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    result = CliRunner().invoke(app, ["viz", "fer_resnet_stra", "--checkpoint", str(tmp_path / "checkpoint.pt")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1

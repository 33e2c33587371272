"""`strabench train` / `strabench eval`: a tiny run, bad input as one-line errors (exit 2), Ctrl-C (exit 130)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from strabench.cli import app

TINY = [
    "--input", "16x16", "--batch", "4", "--epochs", "1", "--device", "cpu", "--workers", "0",
    "--set", "model_overrides={layers=[1,1,1,1], feature_dim=32}",
    "--set", "data_sizes={num_train=14, num_public_test=7, num_private_test=7}",
    "--set", "warmup_epochs=0.0",
]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output  # the error is the last, single line
    return errors[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "fer-run"
    result = run("train", "fer_resnet_stra", "--task", "fer", "--data", "synthetic_expressions", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_prints_where_results_went_and_the_metrics_table(trained_run):
    out, output = trained_run
    assert f"results in {out}" in output
    assert "val_acc" in output and "test_acc" in output and "untrained" in output
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "finished" and saved["model"] == "fer_resnet_stra"


def test_eval_command_matches_the_training_result(trained_run):
    out, _ = trained_run
    result = run("eval", "fer_resnet_stra", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output)
    saved = json.loads((out / "result.json").read_text())
    assert evaluated["metrics"] == pytest.approx(saved["metrics"])
    assert evaluated["task"] == "fer" and evaluated["epoch"] == 1


def test_eval_refuses_a_checkpoint_of_another_model(trained_run):
    out, _ = trained_run
    line = one_line_error(run("eval", "fer_resnet", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu"))
    assert "checkpoint of model 'fer_resnet_stra', not 'fer_resnet'" in line


def test_eval_refuses_a_corrupt_checkpoint(trained_run, tmp_path):
    out, _ = trained_run
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes((out / "checkpoint.pt").read_bytes()[:1000])
    (tmp_path / "checkpoint.pt.sha256").write_bytes((out / "checkpoint.pt.sha256").read_bytes())
    assert "corrupt" in one_line_error(run("eval", "fer_resnet_stra", "--checkpoint", str(bad)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert str(garbage) in one_line_error(run("eval", "fer_resnet_stra", "--checkpoint", str(garbage)))
    assert "does not exist" in one_line_error(run("eval", "fer_resnet_stra", "--checkpoint", str(tmp_path / "none.pt")))


def test_resuming_a_run_dir_holding_a_corrupt_checkpoint_fails_cleanly(trained_run, tmp_path):
    out, _ = trained_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"\x00" * 100)
    line = one_line_error(run("train", "fer_resnet_stra", *TINY, "--out", str(run_dir)))
    assert "checkpoint" in line


@pytest.mark.parametrize(
    "args, match",
    [
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--epochs", "-2"], "epochs must be >= 1, got -2"),
        (["--batch", "0"], "batch_size must be >= 1, got 0"),
        (["--profile", "turbo"], "unknown profile 'turbo'"),
        (["--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["--data", "market1501:/no/such/folder"], "does not exist"),
        (["--data", "market1501"], "needs a path"),
        (["--task", "face"], "supports task(s) reid, not 'face'"),
        (["--device", "gpu7"], "unknown device 'gpu7'"),
        (["--input", "64by32"], "HEIGHTxWIDTH"),
        (["--input", "60x30"], "multiples of 16"),
        (["--amp", "fp4"], "unknown amp mode"),
        (["--set", "epoch=3"], "did you mean 'epochs'"),
        (["--pretrained", "/no/weights.pth"], "not found"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(args, match, tmp_path):
    result = run("train", "resnet50_stra", "--device", "cpu", "--out", str(tmp_path / "x"), *args)
    assert match in one_line_error(result)
    assert not (tmp_path / "x").exists()  # nothing created for a rejected command


def test_unknown_model(tmp_path):
    assert "did you mean" in one_line_error(run("train", "resnet50_str", "--out", str(tmp_path)))


def test_cuda_requested_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    line = one_line_error(run("train", "fer_resnet_stra", *TINY, "--device", "cuda", "--out", str(tmp_path / "x")))
    assert "CUDA is not available" in line


def test_ctrl_c_prints_how_to_resume_and_exits_130(monkeypatch, tmp_path):
    from strabench.train import engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "fit", interrupted)
    out = tmp_path / "run"
    result = run("train", "fer_resnet_stra", "--epochs", "3", "--lr", "0.01", "--out", str(out))
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert f"strabench train fer_resnet_stra --epochs 3 --lr 0.01 --resume --out {out}" in result.output


def test_default_out_dir_names_model_task_seed_and_hash(monkeypatch, tmp_path):
    from strabench.train import engine
    from strabench.train.config import TrainConfig, config_hash, resolve

    seen = {}

    def fake_fit(cfg, out_dir, **kwargs):
        seen["out"] = out_dir
        return {"status": "finished", "config_hash": config_hash(cfg), "train_time_s": 0.0,
                "metrics": {"val_acc": 50.0}, "metrics_untrained": {"val_acc": 14.0}}

    monkeypatch.setattr(engine, "fit", fake_fit)
    monkeypatch.chdir(tmp_path)
    result = run("train", "fer_resnet_stra", "--seed", "3")
    assert result.exit_code == 0, result.output
    expected = f"fer_resnet_stra-fer-s3-{config_hash(resolve(TrainConfig('fer_resnet_stra', seed=3, profile='quick')))}"
    assert str(seen["out"]) == f"runs/{expected}"


REID_TINY = [
    "--task", "reid", "--epochs", "1", "--input", "32x16", "--batch", "8", "--device", "cpu", "--workers", "0",
    "--set", "data_sizes={ num_train_ids = 4, train_images_per_id = 4, num_test_ids = 4, query_cams_per_id = 1, "
    "gallery_images_per_id = 2, num_distractors = 2, num_junk = 0, height = 32, width = 16 }",
]


def test_train_and_eval_a_torchvision_model_with_a_block_put_in(tmp_path):
    """A reference model trained with --replace; eval rebuilds it (blocks included) from the checkpoint."""
    out = tmp_path / "tv"
    trained = run("train", "torchvision:resnet18", *REID_TINY, "--replace", "layer4.*.conv2=eca", "--out", str(out), "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["status"] == "finished"
    assert 'model_overrides = {"replace" = {"layer4.*.conv2" = "eca"}}' in (out / "config.toml").read_text()
    from strabench.train.checkpoint import load_checkpoint

    weights = load_checkpoint(out / "checkpoint.pt")["model"]  # ECA is a gate: it follows the 3x3 conv, which stays
    assert {"backbone.layer4.1.conv2.original.weight", "backbone.layer4.1.conv2.inserted.conv.weight"} <= set(weights)
    checkpoint = str(out / "checkpoint.pt")
    result = run("eval", "torchvision:resnet18", "--checkpoint", checkpoint, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    evaluated, saved = json.loads(result.stdout), json.loads((out / "result.json").read_text())
    assert evaluated["model"] == "torchvision:resnet18" and evaluated["epoch"] == 1
    assert evaluated["metrics"] == pytest.approx(saved["metrics"])
    # other blocks than the checkpoint's: refused before any weight is loaded, one line
    line = one_line_error(run("eval", "torchvision:resnet18", "--checkpoint", checkpoint, "--device", "cpu",
                              "--replace", "layer4.*.conv2=se"))
    assert "was trained with --replace 'layer4.*.conv2=eca', not --replace 'layer4.*.conv2=se'" in line
    line = one_line_error(run("train", "torchvision:resnet18", *REID_TINY, "--replace", "layer9=eca", "--out", str(tmp_path / "x")))
    assert "'layer9' matches no module" in line

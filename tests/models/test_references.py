"""Model references, replace=, the training contract, and the paper column of `flops`."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError, UnknownModelError
from strabench.measure.flops import count_macs
from strabench.measure.params import count_params
from strabench.registry import create_model, model_info

runner = CliRunner()


def test_torchvision_reference_defaults_and_suggestions():
    assert model_info("torchvision:resnet18").input_size() == (224, 224)
    with pytest.raises(UnknownModelError, match="did you mean.*resnet18"):
        model_info("torchvision:resnet181")


def test_timm_reference_or_install_hint(monkeypatch):
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'strabench\[timm\]'"):
            model_info("timm:resnet18")
        return
    assert model_info("timm:resnet18").input_size() == (224, 224)
    with pytest.raises(UnknownModelError, match="did you mean"):
        model_info("timm:resnet181")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent('''
        from torch import nn

        def tiny():
            """A tiny feature extractor."""
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    '''))
    monkeypatch.chdir(tmp_path)
    yield "mynets"
    sys.modules.pop("mynets", None)


def test_callable_reference_needs_input_and_suggests(user_module):
    with pytest.raises(ConfigError, match="pass --input"):
        model_info("mynets:tiny").input_size()
    with pytest.raises(UnknownModelError, match="did you mean tiny"):
        model_info("mynets:tinny")
    result = runner.invoke(app, ["flops", "mynets:tiny", "--input", "8x8", "--counter", "paper", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["macs"]["paper"] == 8 * 8 * 8 * (27 + 1) + 16 * 4 * 4 * (72 + 1)


def test_training_contract_wraps_features_with_our_classifier(user_module):
    model = create_model("mynets:tiny", task="reid", num_classes=5)
    model.train()
    out = model(torch.zeros(2, 3, 16, 16))
    assert out.features.shape == (2, 16) and out.logits.shape == (2, 5)
    assert model.eval()(torch.zeros(1, 3, 16, 16)).shape == (1, 16)
    tv = create_model("torchvision:resnet18", task="reid", num_classes=3)
    assert tv.feature_dim == 512  # fc removed, our classifier on the 512-d pooled features


def test_train_a_user_model_on_synthetic_data(user_module, tmp_path):
    sizes = ("{ num_train_ids = 4, train_images_per_id = 4, num_test_ids = 4, query_cams_per_id = 1, "
             "gallery_images_per_id = 2, num_distractors = 2, num_junk = 0, height = 32, width = 16 }")
    result = runner.invoke(app, ["train", "mynets:tiny", "--task", "reid", "--epochs", "1", "--input", "32x16",
                                 "--batch", "8", "--device", "cpu", "--workers", "0", "--set", f"data_sizes={sizes}",
                                 "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert "mAP" in result.stdout


def test_replace_equals_the_registered_variant():
    replaced = create_model("resnet50", replace={"layer4.*.conv2": "stra"})
    stra = create_model("resnet50_stra")
    assert count_params(replaced) == count_params(stra)
    assert count_macs(replaced, (3, 64, 32)).total == count_macs(stra, (3, 64, 32)).total


@pytest.mark.parametrize("replace,message", [
    ({"layer9.*": "stra"}, "matches no module"),
    ({"layer4.*.conv2": "strra"}, "did you mean stra"),
    ({"layer4.0.conv1": "stra"}, "stra keeps the channel count"),
    ({"layer4.*.conv2": "stra", "layer4.0.*": "se"}, "layer4.0.conv2 is matched by both 'layer4.\\*.conv2' and 'layer4.0.\\*'"),
])
def test_replace_refuses_what_does_not_fit(replace, message):
    with pytest.raises(ConfigError, match=message):
        create_model("resnet50", replace=replace)


def test_flops_shows_the_paper_only_for_the_paper_setting():
    small = json.loads(runner.invoke(app, ["flops", "resnet50_stra", "--input", "32x16", "--counter", "paper", "--json"]).stdout)
    assert small["paper_ref"] is None and "256x128" in small["paper_note"]
    text = runner.invoke(app, ["flops", "resnet50_stra", "--input", "32x16", "--counter", "paper"], env={"COLUMNS": "200"}).stdout
    row = next(line for line in text.splitlines() if "GMACs" in line)
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    # no paper number applies: its columns (empty in every row) are left out, the note says why
    assert "paper" not in header and "delta" not in header and "+" not in row and "not 32x16" in text
    replaced = json.loads(runner.invoke(
        app, ["flops", "resnet50", "--replace", "layer4.*.conv2=stra", "--counter", "paper", "--json"]).stdout)
    assert replaced["paper_ref"] is None and "replaced" in replaced["paper_note"]
    full = json.loads(runner.invoke(app, ["flops", "resnet50_stra", "--counter", "paper", "--json"]).stdout)
    assert full["paper_ref"]["gmacs"] == 3.17 and full["paper_note"] is None


@pytest.mark.parametrize("model,scope", [("torchvision:resnet18", "all"), ("resnet50", "all but classifier")])
def test_flops_params_row_says_what_it_counts(model, scope):
    built = create_model(model)
    every = sum(p.numel() for p in built.parameters())
    data = json.loads(runner.invoke(app, ["flops", model, "--input", "32x32", "--counter", "paper", "--json"]).stdout)
    assert data["params_scope"] == scope
    # a torchvision model's fc is its own: counted; a registered model's training classifier is not
    assert (data["params"] == every) == (scope == "all")
    text = runner.invoke(app, ["flops", model, "--input", "32x32", "--counter", "paper"], env={"COLUMNS": "200"}).stdout
    row = next(line for line in text.splitlines() if "params (M)" in line)
    assert row.split("│")[2].strip() == scope

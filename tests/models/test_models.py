"""Every registered model: shapes, train/eval outputs, aux losses, gradients, input checks."""

from __future__ import annotations

import pytest
import torch

from strabench.errors import ShapeError
from strabench.layers.mode_attention import ModeAttention
from strabench.models.base import ModelOutput
from strabench.registry import create_model, list_models, model_info

# Small inputs keep this fast; the face head is rebuilt for its input size.
SMALL = {"reid": (64, 32), "face": (32, 32), "fer": (20, 20)}


def _build_small(name: str):
    info = model_info(name)
    size = SMALL[info.default_task]
    extra = {"input_size": size} if info.default_task == "face" else {}
    model = create_model(name, num_classes=5, **extra)
    return model, (2, info.default_input[0], *size)


@pytest.mark.parametrize("name", list_models())
def test_train_and_eval_outputs(name):
    model, shape = _build_small(name)
    x = torch.randn(shape)
    model.train()
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 5)
    assert out.features.shape == (2, model.feature_dim)
    has_mode = any(isinstance(m, ModeAttention) for m in model.modules())
    assert set(out.aux_losses) == ({"diversity"} if has_mode else set())
    for value in out.aux_losses.values():
        assert value.dim() == 0 and torch.isfinite(value) and value >= 0
    model.eval()
    with torch.no_grad():
        y = model(x)
    expected = (2, 5) if model.eval_output == "logits" else (2, model.feature_dim)
    assert isinstance(y, torch.Tensor) and y.shape == expected
    # eval mode computes no auxiliary loss
    assert all(not m._aux for m in model.modules() if isinstance(m, ModeAttention))


def test_default_inputs_and_feature_sizes():
    stra = create_model("resnet50_stra").eval()
    with torch.no_grad():
        assert stra(torch.randn(1, 3, 256, 128)).shape == (1, 512)
        feats = stra.stage_outputs(torch.randn(1, 3, 256, 128))
    assert feats[-1].shape[-2:] == (16, 8), "last stride must be 1: layer4 maps are 16x8 at 256x128"
    fer = create_model("fer_resnet_stra").eval()
    with torch.no_grad():
        assert fer(torch.randn(2, 1, 44, 44)).shape == (2, 7)
    assert fer.feature_dim == 512  # conv3 omitted in the StRA stage (App. B.3)


def test_stra_replaces_exactly_layer4_conv2():
    from strabench.layers.local_attention import LocalAttention
    from strabench.layers.stra import StRA

    model = create_model("resnet50_stra")
    for i, block in enumerate(model.layer4):
        assert isinstance(block.conv2, StRA) and isinstance(block.conv2.local, LocalAttention)
        assert block.conv2.mode.interaction
    assert not any(isinstance(m, StRA) for layer in (model.layer1, model.layer2, model.layer3) for m in layer.modules())
    assert not create_model("resnet50_local_mode").layer4[0].conv2.mode.interaction


@pytest.mark.parametrize("name,shape", [("resnet50", (1, 3, 250, 7)), ("resnet50", (1, 1, 256, 128)), ("face_resnet50", (1, 3, 96, 96))])
def test_inputs_the_model_cannot_take(name, shape):
    model = create_model(name).eval()
    with pytest.raises(ShapeError):
        model(torch.zeros(shape))


@pytest.mark.parametrize("name, zeroed", [("resnet50_stra", True), ("face_resnet50", True), ("fer_resnet_stra", False)])
def test_residual_branches_start_at_zero_for_reid_and_face_resnets(name, zeroed):
    """γ = 0 in every bottleneck's last BN (ReID, face), γ = 1 for the FER ResNet; overridable."""
    from strabench.models.resnet import Bottleneck

    def gammas(model):
        return [m.bn3.weight for m in model.modules() if isinstance(m, Bottleneck)]

    found = gammas(create_model(name))
    assert found and all(bool((g == 0).all()) == zeroed for g in found)
    assert all(bool((g == 1).all()) for g in gammas(create_model(name, zero_init_last=False)))


def _without_zero_init(model: torch.nn.Module) -> torch.nn.Module:
    """Undo every zero-initialised BatchNorm scale (the residual branches' last BN, Non-local's W
    BN): at gamma = 0 nothing upstream of it gets a gradient, which would hide a dead parameter."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) and m.weight is not None and not m.weight.any():
            torch.nn.init.ones_(m.weight)
    return model


@pytest.mark.parametrize("name", list_models())
def test_every_trainable_parameter_gets_a_gradient(name):
    """One training step's loss (cross-entropy + auxiliary losses) reaches every trainable
    parameter with a non-zero gradient (seeded, training mode). A conv bias right
    before a BatchNorm is cancelled by the batch mean in maths, and gets only rounding noise
    here: that still counts as reached, whereas an unused parameter gets None and one behind a
    zero scale exactly 0."""
    model, shape = _build_small(name)
    model = _without_zero_init(model).train()
    torch.manual_seed(0)
    out = model(torch.randn(shape))
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 3])) + sum(out.aux_losses.values())
    loss.backward()
    dead = [pname for pname, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not dead, f"{name}: no gradient reaches {len(dead)} parameter tensor(s): {dead[:8]}"

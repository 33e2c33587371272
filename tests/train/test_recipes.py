"""Recipes: the paper's appendix B values, the LR schedules against torch's schedulers, the quick profile."""

from __future__ import annotations

import math

import pytest

from strabench.train import recipes
from strabench.train.config import TrainConfig, resolve
from strabench.train.engine import lr_factor


def test_reid_recipe_is_appendix_b1():
    cfg = resolve(TrainConfig("resnet50_stra", profile="paper"))
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == ("adam", 3e-4, 5e-4, 32, 100)
    assert (cfg.lr_step, cfg.lr_gamma, cfg.milestones) == (20, 0.2, ())
    assert cfg.diversity_weight == 1.0
    assert cfg.input_size == (256, 128)
    assert cfg.freeze_epochs == 0  # trained from scratch: nothing to freeze
    assert cfg.data_sizes == {}  # the synthetic generator's own defaults


def test_reid_freezes_stages_1_to_4_for_8_epochs_only_with_pretrained_weights(tmp_path):
    weights = tmp_path / "imagenet.pth"
    weights.write_bytes(b"stub")
    cfg = resolve(TrainConfig("resnet50_stra", profile="paper", pretrained=str(weights)))
    assert cfg.freeze_epochs == 8
    assert recipes.TRAINABLE_WHILE_FROZEN["resnet50-reid"] == ("layer4.", "head.", "classifier.")
    assert resolve(TrainConfig("resnet50_stra", profile="paper", pretrained=str(weights), freeze_epochs=0)).freeze_epochs == 0


def test_face_recipe_is_appendix_b2():
    cfg = resolve(TrainConfig("face_resnet50_stra", profile="paper"))
    assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.weight_decay) == ("sgd", 0.9, 0.1, 5e-4)
    assert (cfg.batch_size, cfg.epochs, cfg.milestones, cfg.lr_gamma) == (512, 20, (8, 12), 0.1)
    assert cfg.diversity_weight == 0.1
    assert cfg.input_size == (112, 112)


def test_fer_recipe_is_appendix_b3():
    cfg = resolve(TrainConfig("fer_resnet_stra", profile="paper"))
    assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.weight_decay) == ("sgd", 0.9, 0.01, 5e-4)
    assert (cfg.batch_size, cfg.epochs) == (128, 190)
    assert (cfg.lr_decay_start, cfg.lr_step, cfg.lr_gamma, cfg.milestones) == (80, 5, 0.9, ())
    assert cfg.diversity_weight == 1.0
    assert cfg.input_size == (44, 44)


def _torch_reference(scheduler_factory, epochs):
    """LR multipliers per epoch from a real torch scheduler stepped once per epoch (the reference)."""
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = scheduler_factory(opt)
    factors = []
    for _ in range(epochs):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return factors


def test_reid_schedule_matches_torch_steplr():
    import torch

    cfg = resolve(TrainConfig("resnet50_stra", profile="paper"))
    ref = _torch_reference(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.2), cfg.epochs)
    ours = [lr_factor(cfg, e) for e in range(cfg.epochs)]
    assert ours == pytest.approx(ref, rel=1e-12)
    assert ours[19] == 1.0 and ours[20] == pytest.approx(0.2) and ours[99] == pytest.approx(0.2**4)


def test_face_schedule_matches_torch_multisteplr():
    import torch

    cfg = resolve(TrainConfig("face_resnet50_stra", profile="paper"))
    ref = _torch_reference(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[8, 12], gamma=0.1), cfg.epochs)
    assert [lr_factor(cfg, e) for e in range(cfg.epochs)] == pytest.approx(ref, rel=1e-12)


def test_fer_schedule_follows_its_reference_code():
    """[26]'s code: if epoch > 80: lr = 0.01 * 0.9 ** ((epoch - 80) // 5), 0-based epochs."""
    cfg = resolve(TrainConfig("fer_resnet_stra", profile="paper"))
    for epoch in range(cfg.epochs):
        expected = 0.9 ** ((epoch - 80) // 5) if epoch > 80 else 1.0
        assert lr_factor(cfg, epoch) == pytest.approx(expected, rel=1e-12), epoch
    assert lr_factor(cfg, 84) == 1.0 and lr_factor(cfg, 85) == pytest.approx(0.9)


def test_warmup_is_linear_per_step_then_flat():
    cfg = resolve(TrainConfig("resnet50_stra", warmup_epochs=2.0, milestones=(), lr_step=0))
    assert lr_factor(cfg, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 1.0) == pytest.approx(0.55)
    assert lr_factor(cfg, 2.0) == 1.0 and lr_factor(cfg, 5.0) == 1.0


@pytest.mark.parametrize("task, model", [("reid", "resnet50_stra"), ("face", "face_resnet50_stra"), ("fer", "fer_resnet_stra")])
def test_quick_profile_keeps_losses_and_protocol_but_is_small(task, model):
    quick, paper = resolve(TrainConfig(model)), resolve(TrainConfig(model, profile="paper"))
    assert quick.diversity_weight == paper.diversity_weight  # the regulariser under study is unchanged
    assert quick.weight_decay == paper.weight_decay
    assert quick.optimizer == "adam"  # see recipes.QUICK for why (measured)
    assert quick.epochs < paper.epochs and quick.batch_size <= 32
    assert math.prod(quick.input_size) < math.prod(paper.input_size)
    assert quick.data_sizes  # small synthetic data
    if task == "reid":
        assert quick.input_size[0] % 16 == 0 and quick.input_size[1] % 16 == 0


def test_unknown_profile_and_task():
    from strabench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown profile"):
        recipes.recipe("reid", "slow")
    with pytest.raises(ConfigError, match="unknown task"):
        recipes.recipe("pose", "quick")

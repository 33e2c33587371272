"""TrainConfig: resolution against the recipes, hash stability and sensitivity, TOML, errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from strabench.errors import CheckpointError, ConfigError, DataError, UnknownModelError
from strabench.train.config import (
    FIELD_NAMES,
    TrainConfig,
    apply_overrides,
    config_from_toml,
    config_hash,
    is_resolved,
    resolve,
    to_toml,
)


def test_resolve_fills_every_field_and_is_idempotent():
    cfg = resolve(TrainConfig("resnet50_stra"))
    assert is_resolved(cfg)
    assert cfg.task == "reid" and cfg.profile == "quick" and cfg.data == "synthetic_reid"
    assert resolve(cfg) == cfg
    assert config_hash(resolve(cfg)) == config_hash(cfg)


def test_task_defaults_to_the_models():
    assert resolve(TrainConfig("face_resnet50_stra")).task == "face"
    assert resolve(TrainConfig("fer_resnet_stra")).data == "synthetic_expressions"


def test_same_config_same_hash_and_explicit_default_is_the_same_config():
    a = resolve(TrainConfig("resnet50_stra", profile="paper"))
    b = resolve(TrainConfig("resnet50_stra", profile="paper", lr=3e-4, batch_size=32, epochs=100))
    assert a == b
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12 and int(config_hash(a), 16) >= 0


def test_hash_is_stable_across_processes():
    """No dependence on dict order / PYTHONHASHSEED: a fresh interpreter gets the same hash."""
    cfg = TrainConfig("resnet50_stra", data_sizes={"num_train_ids": 5, "height": 64, "width": 32}, model_overrides={"groups": 4})
    code = (
        "from strabench.train.config import TrainConfig, config_hash;"
        "print(config_hash(TrainConfig('resnet50_stra', model_overrides={'groups': 4},"
        " data_sizes={'width': 32, 'height': 64, 'num_train_ids': 5})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == config_hash(cfg)


CHANGES = {
    "task": None,  # single-task models: covered by the error tests
    "data": None,
    "profile": "paper",
    "epochs": 3,
    "batch_size": 8,
    "lr": 0.123,
    "optimizer": "sgd",
    "momentum": 0.5,
    "weight_decay": 1e-3,
    "lr_step": 7,
    "lr_gamma": 0.5,
    "lr_decay_start": 2,
    "milestones": (2, 3),
    "warmup_epochs": 2.0,
    "diversity_weight": 0.5,
    "input_size": (128, 64),
    "seed": 1,
    "data_seed": 1,
    "device": "cpu",
    "amp": "off",
    "channels_last": True,
    "freeze_epochs": 1,
    "model_overrides": {"groups": 4},
    "data_sizes": {"num_train_ids": 7},
    "eval_every": 2,  # the quick recipe's own is 1
    "eval_batch_size": 7,
}


@pytest.mark.parametrize("field", [f for f in FIELD_NAMES if CHANGES.get(f) is not None])
def test_changing_any_result_relevant_field_changes_the_hash(field):
    base = resolve(TrainConfig("resnet50_stra"))
    changed = resolve(dataclasses.replace(base, **{field: CHANGES[field]}))
    assert getattr(changed, field) != getattr(base, field)
    assert config_hash(changed) != config_hash(base)


def test_num_workers_does_not_change_the_hash():
    base = resolve(TrainConfig("resnet50_stra"))
    assert config_hash(dataclasses.replace(base, num_workers=3)) == config_hash(base)


def test_every_field_is_covered_by_the_hash_test():
    assert set(FIELD_NAMES) - set(CHANGES) == {"model", "num_workers", "pretrained"}


def test_pretrained_path_changes_hash(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    base = resolve(TrainConfig("resnet50_stra"))
    with_weights = resolve(TrainConfig("resnet50_stra", pretrained=str(weights)))
    assert with_weights.pretrained == str(weights.resolve())
    assert config_hash(with_weights) != config_hash(base)


def test_toml_round_trip():
    cfg = resolve(TrainConfig("resnet50_stra", model_overrides={"groups": 4, "border": "zero"}, milestones=(2, 4)))
    text = to_toml(cfg)
    assert f"# config_hash = {config_hash(cfg)}" in text
    back = config_from_toml(text)
    assert resolve(back) == cfg
    assert config_hash(back) == config_hash(cfg)


def test_toml_unknown_key_is_named():
    with pytest.raises(ConfigError, match="'epoch'.*did you mean 'epochs'"):
        config_from_toml('model = "resnet50"\nepoch = 3\n', source="suite.toml")


def test_apply_overrides_parses_toml_values():
    cfg = apply_overrides(TrainConfig("resnet50_stra"), ["milestones=[8, 12]", "lr=0.5", "optimizer=sgd", "model_overrides={groups=4}"])
    assert cfg.milestones == (8, 12) and cfg.lr == 0.5 and cfg.optimizer == "sgd" and cfg.model_overrides == {"groups": 4}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(cfg, ["lr"])
    with pytest.raises(ConfigError, match="'lrr'"):
        apply_overrides(cfg, ["lrr=1"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ConfigError, "epochs must be >= 1, got 0"),
        ({"epochs": -3}, ConfigError, "epochs must be >= 1, got -3"),
        ({"batch_size": 0}, ConfigError, "batch_size must be >= 1, got 0"),
        ({"epochs": 2.5}, ConfigError, "epochs must be an integer"),
        ({"lr": 0.0}, ConfigError, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, ConfigError, "lr must be"),
        ({"profile": "fast"}, ConfigError, "unknown profile 'fast'"),
        ({"optimizer": "rmsprop"}, ConfigError, "unknown optimizer 'rmsprop'"),
        ({"amp": "fp8"}, ConfigError, "unknown amp mode 'fp8'"),
        ({"device": "tpu"}, ConfigError, "unknown device 'tpu'"),
        ({"milestones": (5, 3)}, ConfigError, "strictly increasing"),
        ({"momentum": 1.0}, ConfigError, "momentum must be < 1"),
        ({"task": "face"}, ConfigError, "supports task"),
        ({"task": "pose"}, ConfigError, "unknown task 'pose'"),
        ({"data": "imagenet"}, DataError, "unknown dataset 'imagenet'"),
        ({"data": "synthetic_faces"}, DataError, "for task 'face', not 'reid'"),
        ({"data": "market1501:/nonexistent/market"}, DataError, "does not exist"),
        ({"model_overrides": {"num_classes": 3}}, ConfigError, "num_classes"),
        ({"pretrained": "/nonexistent/w.pth"}, CheckpointError, "not found"),
        ({"input_size": (4, 4)}, ConfigError, "input_size height must be >= 8"),
    ],
)
def test_bad_values_raise_one_line_errors(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        resolve(TrainConfig("resnet50_stra", **kwargs))
    assert "\n" not in str(info.value)


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="did you mean"):
        resolve(TrainConfig("resnet50_str"))


def test_data_sizes_only_for_synthetic(tmp_path):
    with pytest.raises(ConfigError, match="only apply to synthetic"):
        resolve(TrainConfig("resnet50_stra", data=f"market1501:{tmp_path}", data_sizes={"num_train_ids": 3}))
    real = resolve(TrainConfig("resnet50_stra", data=f"market1501:{tmp_path}"))
    assert real.data == f"market1501:{tmp_path.resolve()}" and real.data_sizes == {}


def test_user_data_sizes_merge_over_the_profiles():
    cfg = resolve(TrainConfig("resnet50_stra", data_sizes={"num_train_ids": 5}))
    assert cfg.data_sizes["num_train_ids"] == 5
    assert cfg.data_sizes["height"] == 64  # the quick profile's
    json.dumps(cfg.data_sizes)


def test_replace_in_model_overrides_is_checked_and_an_empty_one_changes_no_hash():
    from strabench.train.config import TrainConfig, config_hash, resolve, to_toml

    plain = TrainConfig(model="resnet50")
    assert config_hash(TrainConfig(model="resnet50", model_overrides={"replace": {}})) == config_hash(plain)
    blocks = resolve(TrainConfig(model="resnet50", model_overrides={"replace": {"layer4.*.conv2": "stra"}}))
    assert blocks.model_overrides == {"replace": {"layer4.*.conv2": "stra"}}
    assert config_hash(blocks) != config_hash(plain)
    assert 'model_overrides = {"replace" = {"layer4.*.conv2" = "stra"}}' in to_toml(blocks)
    with pytest.raises(ConfigError, match="replace must be a table of module pattern = block"):
        resolve(TrainConfig(model="resnet50", model_overrides={"replace": "stra"}))

from __future__ import annotations

import pytest

from strabench import registry
from strabench.errors import ConfigError, StrabenchError, UnknownModelError

REQUIRED = [
    "resnet50", "resnet50_se", "resnet50_nl", "resnet50_sasa", "resnet50_sasa_mode", "resnet50_conv_mode",
    "resnet50_gconv_mode", "resnet50_local", "resnet50_local_mode", "resnet50_stra",
    "mobilenetv2_100", "mobilenetv2_140", "mobilenetv2_100_stra", "mobilenetv2_140_stra",
    "face_resnet50", "face_resnet50_stra", "fer_resnet", "fer_resnet_stra",
]


def test_every_required_model_is_registered():
    assert set(REQUIRED) <= set(registry.list_models())


def test_wildcards():
    stra = registry.list_models("*stra*")
    assert set(stra) == {n for n in REQUIRED if "stra" in n}
    assert registry.list_models("mobilenetv2_1?0") == ["mobilenetv2_100", "mobilenetv2_140"]
    assert registry.list_models("nothing*") == []


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownModelError, match="did you mean resnet50_stra"):
        registry.model_info("resnet50_str")
    with pytest.raises(StrabenchError):
        registry.create_model("vit_huge")


def test_registering_twice_raises():
    registry.list_models()  # load the zoo first

    with pytest.raises(ValueError, match="already registered"):

        @registry.register_model(tasks=("reid",), default_input=(3, 256, 128), block="x", family="y")
        def resnet50():  # noqa: F811 - the duplicate is the point
            raise AssertionError


def test_metadata_is_complete():
    for name in registry.list_models():
        info = registry.model_info(name)
        assert info.tasks and info.block and info.family and info.description
        assert len(info.default_input) == 3
    assert registry.model_info("resnet50_stra").paper.gmacs == 3.17
    assert "Table 4" in " ".join(registry.model_info("resnet50_gconv_mode").paper.tables)


def test_task_and_override_errors():
    with pytest.raises(ConfigError, match="supports task"):
        registry.create_model("resnet50", task="fer")
    with pytest.raises(ConfigError, match="resnet50"):
        registry.create_model("resnet50", not_an_option=3)


def test_overrides_reach_the_blocks():
    from strabench.layers.mode_attention import ModeAttention

    model = registry.create_model("resnet50_stra", groups=4, num_classes=10)
    modes = [m for m in model.modules() if isinstance(m, ModeAttention)]
    assert len(modes) == 3 and all(m.groups == 4 for m in modes)
    assert model.classifier.out_features == 10


def test_import_is_light():
    import subprocess
    import sys

    code = "import strabench, strabench.cli, strabench.registry; strabench.registry.list_models(); import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", "importing the CLI or listing models must not import torch"

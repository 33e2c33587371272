from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from strabench.errors import CheckpointError
from strabench.registry import create_model


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_torchvision_weights_fill_the_backbone_and_report_the_rest(torchvision_weights):
    model = create_model("resnet50_stra", pretrained=str(torchvision_weights))
    report = model.pretrained_report
    source = torch.load(torchvision_weights, weights_only=True)
    torch.testing.assert_close(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    torch.testing.assert_close(model.layer4[0].conv1.weight, source["layer4.0.conv1.weight"])
    assert "fc.weight" in report.unexpected and "layer4.0.conv2.weight" in report.unexpected
    assert any(k.startswith("head.") for k in report.missing)
    assert any(k.startswith("layer4.0.conv2.") for k in report.missing)
    assert not any(k.startswith("layer1.") for k in report.missing)


def test_plain_resnet_loads_everything_but_the_head(torchvision_weights):
    report = create_model("resnet50", pretrained=str(torchvision_weights)).pretrained_report
    assert {k.split(".")[0] for k in report.missing} == {"head", "classifier"}
    assert set(report.unexpected) == {"fc.bias", "fc.weight"}


def test_bad_files_are_refused(tmp_path):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="cut.pth"):
        create_model("resnet50", pretrained=str(truncated))
    other = tmp_path / "mlp.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(CheckpointError, match="another model"):
        create_model("resnet50", pretrained=str(other))
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet50", pretrained=str(tmp_path / "missing.pth"))


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Exploit.marker}",))


def test_malicious_pickle_is_not_executed(tmp_path):
    _Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Exploit()}, f)
    with pytest.raises(CheckpointError):
        create_model("resnet50", pretrained=str(path))
    assert not _Exploit.marker.exists()

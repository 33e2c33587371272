"""One loader for saved weights: pretrained=, checkpoint weights and eval give the same guarantees."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from strabench.errors import CheckpointError
from strabench.models import weights
from strabench.models.weights import CorruptCheckpointError, load_state, read_state
from strabench.train.checkpoint import load_model_weights, save_checkpoint

PACKAGE = Path(__file__).resolve().parents[2] / "strabench"


class Net(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, classes)


def _pretrained(model: nn.Module, path: Path) -> object:
    """The registry's path (create_model(pretrained=...)) without building a big model."""
    from strabench.registry import _load_pretrained

    _load_pretrained(model, str(path))
    return model.pretrained_report


ENTRY_POINTS = {
    "load_state strict": lambda model, path: load_state(path, model, strict=True),
    "load_state fitting": lambda model, path: load_state(path, model, strict=False),
    "load_model_weights": lambda model, path: load_model_weights(model, path),
    "pretrained=": _pretrained,
}


class _Exploit:
    marker: Path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Exploit.marker}",))


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_refuses_unsafe_and_damaged_files_in_one_line(entry, tmp_path):
    load = ENTRY_POINTS[entry]
    _Exploit.marker = tmp_path / "pwned"
    for writer in ("pickle", "torch.save"):
        evil = tmp_path / f"evil-{writer}.pth"
        with open(evil, "wb") as handle:
            (pickle.dump if writer == "pickle" else torch.save)({"fc.weight": _Exploit()}, handle)
        with pytest.raises(CorruptCheckpointError, match=f"evil-{writer}.pth is not a valid .* or unsafe to load") as info:
            load(Net(), evil)
        assert not _Exploit.marker.exists() and "\n" not in str(info.value)
    # a checksum that does not match its file: refused before unpickling, whichever loader
    good = tmp_path / "checkpoint.pt"
    save_checkpoint(good, {"model": Net().state_dict()})
    good.write_bytes(good.read_bytes()[:-7] + b"garbage")
    with pytest.raises(CorruptCheckpointError, match="sha256 mismatch"):
        load(Net(), good)
    with pytest.raises(CheckpointError, match="weights file .*missing.pth does not exist"):
        load(Net(), tmp_path / "missing.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state_dict"):
        load(Net(), tmp_path / "list.pth")


def test_the_file_forms_read_alike(tmp_path):
    source = Net().state_dict()
    torch.save(source, tmp_path / "plain.pth")
    torch.save({"model": source}, tmp_path / "model.pth")
    torch.save({"state_dict": source, "epoch": 3}, tmp_path / "wrapped.pth")
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": source, "epoch": 3})
    for name in ("plain.pth", "model.pth", "wrapped.pth", "checkpoint.pt"):
        read = read_state(tmp_path / name)
        assert list(read) == list(source) and all(torch.equal(read[k], source[k]) for k in source), name


def test_strict_refuses_any_misfit_listing_it(tmp_path):
    torch.save(Net(classes=751).state_dict(), tmp_path / "reid.pth")
    with pytest.raises(CheckpointError) as info:
        load_state(tmp_path / "reid.pth", Net(classes=10), name="tiny_net")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'reid.pth'} does not fit tiny_net: 2 shape mismatches (")
    assert "fc.weight: file (751, 4) vs model (10, 4)" in message and "another model" in message and "\n" not in message


def test_fitting_loads_what_fits_and_reports_the_rest(tmp_path, caplog):
    source = Net(classes=751)
    state = {**source.state_dict(), "extra.weight": torch.ones(2)}
    torch.save(state, tmp_path / "reid.pth")
    target = Net(classes=10)
    fc_before = target.fc.weight.detach().clone()
    with caplog.at_level("WARNING"):
        report = load_state(tmp_path / "reid.pth", target, strict=False)
    assert report.mismatched == ("fc.weight", "fc.bias") and report.unexpected == ("extra.weight",)
    assert report.missing == () and report.loaded == len(source.state_dict()) - 2
    assert torch.equal(target.features[0].weight, source.features[0].weight) and torch.equal(target.fc.weight, fc_before)
    assert "shape mismatch 2: fc.weight, fc.bias" in caplog.text and "unexpected 1: extra.weight" in caplog.text
    torch.save(nn.Linear(7, 7).state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no tensor matches Net by name and shape"):
        load_state(tmp_path / "other.pth", Net(), strict=False)


def test_dataparallel_names(tmp_path):
    source = Net()
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "dp.pth")
    with pytest.raises(CheckpointError, match="saved from DataParallel"):
        load_state(tmp_path / "dp.pth", Net())
    target = Net()
    report = load_state(tmp_path / "dp.pth", target, strict=False)
    assert report.prefix_removed and report.missing == report.unexpected == ()
    assert torch.equal(target.fc.weight, source.fc.weight)


def test_tensors_already_read_are_not_read_again(tmp_path, monkeypatch):
    source = Net()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("read twice"))
    target = Net()
    load_state(tmp_path / "gone.pt", target, state=source.state_dict())
    assert torch.equal(target.fc.weight, source.fc.weight)


def test_only_the_loader_unpickles_or_fills_a_model():
    """torch.load appears in one module; a model's load_state_dict in it and in the trainer's
    resume (model, optimizer, scheduler of the same run, whose config hash was checked)."""
    loads, fills = [], []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                where = str(path.relative_to(PACKAGE.parent))
                if node.func.attr == "load" and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    loads.append(where)
                if node.func.attr == "load_state_dict" and "model" in ast.unparse(node.func.value):
                    fills.append(f"{where}:{ast.unparse(node.func.value)}")
    assert loads == ["strabench/models/weights.py"]
    assert sorted(fills) == ["strabench/models/weights.py:model", "strabench/train/engine.py:self.model"]
    assert weights.load_state.__module__ == "strabench.models.weights"

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.suite import runner

from suite.fakes import FakeEngine, fake_measure, write_suite


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    return fake


@pytest.fixture(scope="module")
def _two_seed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two_seeds")
    fake = FakeEngine()
    fake.fail_models.add("resnet50")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_fit", fake)
        patch.setattr(runner, "measure_model", fake_measure)
        suite = write_suite(root, seeds="[0, 1]")
        result = CliRunner().invoke(app, ["run", str(suite), "--out", str(root / "results")])
    assert result.exit_code == 1, result.output
    return root / "results" / "t"


@pytest.fixture
def two_seed_results(_two_seed_template: Path, tmp_path: Path) -> Path:
    """results/t with base (resnet50, both seeds diverge) and stra (resnet50_stra, mAP 55 and 65)."""
    copy = tmp_path / "results" / "t"
    shutil.copytree(_two_seed_template, copy)
    return copy

from __future__ import annotations

import pytest

from strabench.suite import runner

from .fakes import FakeEngine, fake_measure


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """The fake engine wired into the runner (fit and measuring)."""
    fake = FakeEngine()
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    return fake

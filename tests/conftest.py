"""Shared test settings: deterministic, single-threaded torch (pytest-xdist runs 2 workers)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("STRABENCH_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-datasets"))
# submitit's job folders (user-private, outside results folders): not in the home directory
os.environ.setdefault("STRABENCH_JOBS_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "test-jobs"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield

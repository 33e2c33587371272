"""Tiny generated datasets shared by the data tests (session-scoped: generated once per worker).

Tests that damage a dataset copy it into their own ``tmp_path`` first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from strabench.data.synthetic import (
    generate_synthetic_expressions,
    generate_synthetic_faces,
    generate_synthetic_reid,
)

TINY_REID = dict(num_train_ids=8, train_images_per_id=4, num_test_ids=6, query_cams_per_id=2,
                 gallery_images_per_id=4, num_distractors=4, num_junk=3)
TINY_FACES = dict(num_train_ids=4, images_per_train_id=3, num_test_ids=4, images_per_test_id=3,
                  num_folds=2, pairs_per_fold=2)
TINY_FER = dict(num_train=14, num_public_test=7, num_private_test=7)


@pytest.fixture(scope="session")
def reid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_reid(tmp_path_factory.mktemp("reid") / "market", seed=3, **TINY_REID)


@pytest.fixture(scope="session")
def faces_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_faces(tmp_path_factory.mktemp("faces") / "faces", seed=3, **TINY_FACES)


@pytest.fixture(scope="session")
def fer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_expressions(tmp_path_factory.mktemp("fer") / "fer", seed=3, **TINY_FER)

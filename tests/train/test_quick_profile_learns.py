"""The quick profile must learn, not just run: the real recipe, end to end, trained vs untrained.

The face task is the cheapest of the three (about a minute and a half on 2 cores); ReID and FER
are checked by the committed suite results (results/quick, results/fer) from the same recipes.
"""

from __future__ import annotations

import pytest

from strabench.train.config import TrainConfig
from strabench.train.engine import fit


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_face_quick_profile_beats_its_untrained_network_by_a_wide_margin(tmp_path):
    # The recipe's training set and schedule; a test set of the former size (200 pairs) is enough
    # to tell learning from chance and keeps the test fast (the recipe's 10,000 pairs: docs/data.md).
    # No evaluation between epochs (eval_every=0): the recipe's per-epoch curve would cost 12 of
    # the test's 14 evaluations, about 40 % of its time, and changes no result
    # (tests/train/test_tracking.py).
    small_test = {"num_test_ids": 20, "images_per_test_id": 4, "pairs_per_fold": 10}
    result = fit(TrainConfig("face_resnet50_stra", task="face", device="cpu", num_workers=0, data_sizes=small_test,
                             eval_every=0), tmp_path / "run")
    trained, untrained = result["metrics"]["mean"], result["metrics_untrained"]["mean"]
    assert untrained < 60.0  # pairs are balanced: chance is 50%
    assert trained > untrained + 20.0, (trained, untrained)

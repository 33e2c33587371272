"""Where the noise comes from: the cluster-sampling variance against a brute-force cluster
bootstrap and hand cases, and the decomposition's model checked by simulation (its estimates
are unbiased, and it predicts the variance of a mean over new seeds and new test items)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strabench.report.noise import NoiseSplit, align_items, cluster_variance, split_noise


def test_singleton_clusters_give_the_textbook_standard_error() -> None:
    values = np.array([1.0, 4.0, 2.0, 7.0])
    mean = values.mean()
    s2 = sum((v - mean) ** 2 for v in values) / 3
    assert cluster_variance(values, ["a", "b", "c", "d"])[0] == pytest.approx(s2 / 4)


def test_cluster_variance_by_hand() -> None:
    # clusters {1, 3} and {8}: totals 4 and 8, sizes 2 and 1, mean 4; deviations 4 - 8 = -4 and
    # 8 - 4 = 4; C/(C-1) * (16 + 16) / n^2 = 2 * 32 / 9
    assert cluster_variance([1.0, 3.0, 8.0], ["x", "x", "y"])[0] == pytest.approx(64 / 9)


def test_cluster_variance_matches_a_cluster_bootstrap() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 6, size=40)
    clusters = np.repeat(np.arange(40), sizes)
    values = rng.normal(0, 1, 40)[clusters] + rng.normal(0, 1, clusters.size)
    members = [np.flatnonzero(clusters == c) for c in range(40)]
    means = []
    for _ in range(4000):  # resample whole clusters, as the runs' intervals do
        picked = np.concatenate([members[c] for c in rng.integers(0, 40, size=40)])
        means.append(values[picked].mean())
    bootstrap = float(np.var(means))
    analytic = float(cluster_variance(values, clusters)[0])
    assert analytic * 39 / 40 == pytest.approx(bootstrap, rel=0.12), "the bootstrap's variance is (C-1)/C of ours"


def simulate(rng: np.random.Generator, seeds: int, clusters: int, per: int, sd: dict[str, float]) -> np.ndarray:
    """y[s, i] = cluster + item + seed + seed x cluster + seed x item (all normal, mean 0)."""
    cluster_of = np.repeat(np.arange(clusters), per)
    n = clusters * per
    return (rng.normal(0, sd["u"], clusters)[cluster_of] + rng.normal(0, sd["v"], n)
            + rng.normal(0, sd["b"], seeds)[:, None]
            + rng.normal(0, sd["w"], (seeds, clusters))[:, cluster_of] + rng.normal(0, sd["z"], (seeds, n)))


def test_the_decomposition_by_simulation() -> None:
    """Each run draws a new test set and new seeds. The model's components are known:
    item a = (per^2 u^2 C + n v^2) / n^2, interaction e = (per^2 w^2 C + n z^2) / n^2,
    training b^2; the estimates average to them, and the predicted variance of the mean
    over seeds (a + b^2 / S + e / S) matches the variance of the simulated means."""
    rng = np.random.default_rng(11)
    seeds, clusters, per = 5, 50, 4
    sd = {"u": 2.0, "v": 1.0, "b": 1.5, "w": 0.8, "z": 2.0}
    n = clusters * per
    item = (per**2 * sd["u"] ** 2 * clusters + n * sd["v"] ** 2) / n**2
    interaction = (per**2 * sd["w"] ** 2 * clusters + n * sd["z"] ** 2) / n**2
    labels = np.repeat(np.arange(clusters), per).astype(str)
    estimates, means = [], []
    for _ in range(2000):
        y = simulate(rng, seeds, clusters, per, sd)
        split = split_noise(y, labels)
        estimates.append((split.item_var, split.interaction_var, split.training_var, split.variance(), split.within_run_var))
        means.append(y.mean())
    got = np.array(estimates).mean(axis=0)
    se = np.array(estimates).std(axis=0) / math.sqrt(len(estimates))
    truth = [item, interaction, sd["b"] ** 2, item + (sd["b"] ** 2 + interaction) / seeds, item + interaction]
    for name, value, error, expected in zip(("item", "interaction", "training", "total", "within"), got, se, truth):
        # clipping at zero biases upward a little; the finite-population factor C/(C-1) downward
        assert abs(value - expected) <= 4 * error + 0.03 * expected, f"{name}: {value:.4f} vs {expected:.4f}"
    observed = float(np.var(means, ddof=1))
    assert observed == pytest.approx(truth[3], rel=0.1), "the predicted variance of the mean over seeds and items"


def test_which_knob_by_hand() -> None:
    split = NoiseSplit(seeds=4, items=100, clusters=50, within_run_var=0.5, per_seed_var=4.1,
                       item_var=0.4, interaction_var=0.1, training_var=4.0)
    assert split.variance() == pytest.approx(0.4 + 4.0 / 4 + 0.1 / 4)
    projected = split.projected()
    assert projected["more_seeds"] == pytest.approx(math.sqrt(0.4 + 4.0 / 8 + 0.1 / 8))
    assert projected["more_items"] == pytest.approx(math.sqrt(0.2 + 4.0 / 4 + 0.1 / 8))
    assert split.seed_share == pytest.approx(1.0 / 1.425)
    assert projected["more_seeds"] < projected["more_items"], "training dominates: seeds buy more"


def test_one_seed_gives_only_the_test_set_part() -> None:
    split = split_noise(np.array([[1.0, 0.0, 1.0, 1.0]]), ["a", "b", "c", "d"])
    assert split.seeds == 1 and split.per_seed_var is None and split.variance() is None
    assert split.within_run_var == pytest.approx(0.75 * 0.25 * 4 / 3 / 4)


def test_align_items_refuses_other_test_sets() -> None:
    run = (("q1", "q2", "q3"), ("a", "a", "b"), np.array([1.0, 0.0, np.nan]))
    other = (("q1", "q2", "q4"), ("a", "a", "b"), np.array([1.0, 1.0, 0.0]))
    assert isinstance(align_items([run, other]), str)
    matrix, clusters = align_items([run, (run[0], run[1], np.array([0.0, 1.0, 1.0]))])
    assert matrix.shape == (2, 2) and clusters == ("a", "a"), "items some run did not score are left out"

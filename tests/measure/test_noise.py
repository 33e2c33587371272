"""When a timing is flagged noisy (bench and suite latency), from synthetic timings."""

from __future__ import annotations

import numpy as np

from strabench.measure.latency import MIN_SAMPLES, NOISY_IQR_FRACTION, noise_reasons


def _summary(times_ms: list[float]) -> tuple[float, float, int]:
    q1, median, q3 = np.percentile(times_ms, [25, 50, 75])
    return float(median), float(q3 - q1), len(times_ms)


def test_a_tight_timing_on_an_idle_machine_is_clean() -> None:
    median, iqr, n = _summary([100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 100.1, 99.9])
    assert noise_reasons(median, iqr, n, busy_cores=0.1, cores=2) == []


def test_wide_spread_is_noisy() -> None:
    median, iqr, n = _summary([1774.0, 900.0, 2600.0, 1200.0, 2100.0, 1500.0, 2400.0, 1000.0])
    assert iqr / median > NOISY_IQR_FRACTION
    (reason,) = noise_reasons(median, iqr, n, busy_cores=0.0, cores=2)
    assert reason.startswith("IQR ") and "of the median" in reason


def test_spread_just_under_the_threshold_is_not() -> None:
    assert noise_reasons(100.0, 100.0 * NOISY_IQR_FRACTION * 0.99, 20, busy_cores=0.0, cores=2) == []
    assert noise_reasons(100.0, 100.0 * NOISY_IQR_FRACTION * 1.01, 20, busy_cores=0.0, cores=2) != []


def test_one_sample_has_no_iqr() -> None:
    median, iqr, n = _summary([101.0])
    assert iqr == 0.0
    (reason,) = noise_reasons(median, iqr, n, busy_cores=0.0, cores=2)
    assert "only 1 sample" in reason and n < MIN_SAMPLES


def test_a_busy_machine_and_a_noisy_baseline_are_said() -> None:
    reasons = noise_reasons(100.0, 1.0, 20, busy_cores=1.0, cores=2, baseline_noisy=True)
    assert any("busy" in r for r in reasons) and any("baseline" in r for r in reasons)
    assert noise_reasons(100.0, 1.0, 20, busy_cores=0.9, cores=2) == []

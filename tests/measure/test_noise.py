"""When a timing is flagged noisy (bench and suite latency), from synthetic timings."""

from __future__ import annotations

import numpy as np
import pytest

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


# --- other processes' load before timing (measure.timing.OtherLoad) ---------------------------


def _fake_snapshots(monkeypatch, snapshots) -> list[float]:
    from strabench.measure import timing

    queue = list(snapshots)
    slept: list[float] = []
    monkeypatch.setattr(timing, "_snapshot", lambda: queue.pop(0))
    monkeypatch.setattr(timing, "_sleep", slept.append)
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 4)
    return slept


def test_other_load_is_the_machines_busy_time_less_this_process_own(monkeypatch) -> None:
    from strabench.measure.timing import OtherLoad, _Snapshot

    # 2 s of wall time: the machine busy for 5 CPU-seconds, 2 of them this process's (two threads)
    slept = _fake_snapshots(monkeypatch, [_Snapshot(100.0, 50.0, 10.0), _Snapshot(102.0, 55.0, 12.0)])
    monkeypatch.setattr("strabench.measure.timing._clock", lambda: 102.0)
    assert OtherLoad().cores() == 1.5
    assert slept == []  # the window was long enough: no idle wait


def test_a_short_window_is_waited_out_and_the_result_stays_within_the_cores(monkeypatch) -> None:
    from strabench.measure.timing import OtherLoad, _Snapshot

    slept = _fake_snapshots(monkeypatch, [_Snapshot(100.0, 0.0, 0.0), _Snapshot(100.5, 9.0, 0.0)])
    monkeypatch.setattr("strabench.measure.timing._clock", lambda: 100.1)
    assert OtherLoad(min_window_s=0.5).cores() == 4.0  # 18 cores' worth of ticks is clamped to the 4 there are
    assert slept == [pytest.approx(0.4)]
    _fake_snapshots(monkeypatch, [_Snapshot(100.0, 5.0, 0.0), _Snapshot(101.0, 5.0, 0.3)])
    assert OtherLoad(min_window_s=0.0).cores() == 0.0  # tick rounding never makes it negative
    _fake_snapshots(monkeypatch, [None])
    assert OtherLoad().cores() is None  # no psutil: unknown, not zero


def test_this_process_spinning_is_not_counted_as_another_process() -> None:
    import resource
    import time

    import psutil

    from strabench.measure.timing import OtherLoad

    def machine_busy() -> float:  # psutil.cpu_percent's definition, in CPU-seconds
        t = psutil.cpu_times()
        return sum(t) - t.guest - t.guest_nice - t.idle - t.iowait

    def own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    wall0, busy0, own0 = time.monotonic(), machine_busy(), own()
    load = OtherLoad(min_window_s=0.0)
    until = time.monotonic() + 0.6
    while time.monotonic() < until:  # busy on our own core
        pass
    others = load.cores()
    wall = time.monotonic() - wall0
    machine_rate, own_rate = (machine_busy() - busy0) / wall, (own() - own0) / wall
    assert others is not None and own_rate > 0.3
    assert machine_rate - others >= 0.7 * own_rate  # our own core is taken out of the machine's busy time

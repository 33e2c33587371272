"""The rules of a timing, pure and testable with a fake clock: the interleaved order of
measurements, the bracketed ratios, batch halving on out-of-memory, and when a timing is noisy.

``strabench.measure.latency`` runs the models; what it measures, in which order, and when it
flags a number as untrustworthy is decided here.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["MIN_SAMPLES", "NOISY_IQR_FRACTION", "OtherLoad", "bracket_ratios", "fit_batch", "noise_reasons", "schedule"]

T = TypeVar("T")


def schedule(candidates: Sequence[str], baseline: str | None, rounds: int) -> list[list[str]]:
    """The measurement order, round by round: ``B c1 B c2 ... B cn B``, then ``cn B ... c1 B`` ...

    Every candidate sits between two baseline measurements; rounds chain (a round's last
    baseline measurement opens the next round) and alternate direction. Without a baseline a
    round is just the candidates, still alternating direction.
    """
    plan = []
    for r in range(rounds):
        order = list(candidates) if r % 2 == 0 else list(reversed(candidates))
        if baseline is None:
            plan.append(order)
            continue
        seq = [baseline] if r == 0 or not order else []
        for name in order:
            seq += [name, baseline]
        plan.append(seq)
    return plan


def bracket_ratios(rounds: Sequence[Sequence[tuple[str, float]]], baseline: str) -> dict[str, list[float]]:
    """Per-round ratio of each candidate's time to the mean of the baseline times just before and after it.

    ``rounds`` holds, per round, ``(name, time)`` in measurement order (times per image, so a
    batch halved by an out-of-memory retry still compares). Neighbours are looked up across
    round boundaries, since rounds chain.
    """
    flat = [(r, name, value) for r, seq in enumerate(rounds) for name, value in seq]
    ratios: dict[str, list[float]] = {}
    for i, (_, name, value) in enumerate(flat):
        if name == baseline:
            continue
        before = next((t for _, n, t in reversed(flat[:i]) if n == baseline), None)
        after = next((t for _, n, t in flat[i + 1 :] if n == baseline), None)
        refs = [t for t in (before, after) if t is not None]
        if not refs:
            raise ValueError(f"no baseline {baseline!r} measurement around {name!r}")
        ratios.setdefault(name, []).append(value / (sum(refs) / len(refs)))
    return ratios


def fit_batch(
    attempt: Callable[[int], T],
    batch: int,
    *,
    is_oom: Callable[[BaseException], bool],
    cleanup: Callable[[], None] = lambda: None,
) -> tuple[T, int]:
    """Run ``attempt(batch)``, halving the batch after each out-of-memory error (down to 1)."""
    while True:
        try:
            return attempt(batch), batch
        except BaseException as exc:  # noqa: BLE001 - re-raised unless it is an OOM
            if not is_oom(exc) or batch == 1:
                raise
        cleanup()  # after the except block, so the failed attempt's tensors are already freed
        batch //= 2


# --- noise ---------------------------------------------------------------------------------------

# A timing is flagged noisy when its spread is wide, it rests on too few samples for an IQR, or
# the machine was busy before it started (at least half the cores in use, over 0.5 s).
NOISY_IQR_FRACTION = 0.10
MIN_SAMPLES = 5


def noise_reasons(
    median_ms: float, iqr_ms: float, samples: int, busy_cores: float | None, cores: int, *, baseline_noisy: bool = False,
) -> list[str]:
    """Why a timing should not be trusted ([] when nothing is wrong); see the thresholds above."""
    reasons = []
    if samples < MIN_SAMPLES:
        reasons.append(f"only {samples} sample(s): no meaningful IQR (need >= {MIN_SAMPLES}; raise --min-run-time)")
    elif median_ms > 0 and iqr_ms / median_ms > NOISY_IQR_FRACTION:
        reasons.append(f"IQR {100 * iqr_ms / median_ms:.0f}% of the median (> {100 * NOISY_IQR_FRACTION:.0f}%)")
    if busy_cores is not None and busy_cores >= cores / 2:
        reasons.append(f"machine busy: {busy_cores:.1f} of {cores} cores in use before timing")
    if baseline_noisy:
        reasons.append("the baseline's timing is noisy, so is the ratio")
    return reasons


_clock, _sleep = time.monotonic, time.sleep  # (a test's fakes replace them)


@dataclass(frozen=True)
class _Snapshot:
    wall_s: float
    machine_busy_s: float  # CPU time all cores spent busy since boot (psutil.cpu_times)
    own_s: float  # this process's CPU time, every thread (getrusage)


def _snapshot() -> _Snapshot | None:
    try:
        import psutil

        times = psutil.cpu_times()._asdict()
        usage = resource.getrusage(resource.RUSAGE_SELF)
    except (ImportError, OSError, AttributeError):
        return None
    # as psutil.cpu_percent counts: guest time is inside user time already; idle and iowait are not busy
    total = sum(times.values()) - times.get("guest", 0.0) - times.get("guest_nice", 0.0)
    busy = total - times["idle"] - times.get("iowait", 0.0)
    return _Snapshot(_clock(), busy, usage.ru_utime + usage.ru_stime)


class OtherLoad:
    """How many cores other processes keep busy while this one builds and warms up its models.

    Started before that work and read before the timing starts: the machine's busy CPU time
    minus this process's own, over the wall time between (at least ``min_window_s``: a shorter
    window is waited out, idle). Unlike the 1-minute load average, which still counts a training
    that just ended in this very process, this is the load the timing is about to compete with;
    and it costs no idle wait of its own where building the models takes longer than the window.
    """

    def __init__(self, min_window_s: float = 0.5) -> None:
        self.min_window_s = min_window_s
        self.start = _snapshot()

    def cores(self) -> float | None:
        """Cores in use by other processes since the start (None where psutil cannot say)."""
        if self.start is None:
            return None
        left = self.min_window_s - (_clock() - self.start.wall_s)
        if left > 0:
            _sleep(left)
        end = _snapshot()
        if end is None or end.wall_s <= self.start.wall_s:
            return None
        others = (end.machine_busy_s - self.start.machine_busy_s) - (end.own_s - self.start.own_s)
        return min(max(0.0, others / (end.wall_s - self.start.wall_s)), float(os.cpu_count() or 1))


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None

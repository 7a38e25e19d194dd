"""When each live message is due: an open-loop arrival schedule and a pacer that keeps to it.

Card payments come from many independent card holders, so arrivals at a steady mean rate are
a Poisson process (exponential gaps, seeded: every app under test gets the same schedule).
The generator is open loop: a message is due at its scheduled time whatever the system under
test does, and a generator that falls behind sends at once to catch up rather than stretch
the schedule. How late it sent each message is recorded, so a busy load generator is visible
in the results instead of hidden in the latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

Arrivals = Literal["poisson", "uniform"]


def arrival_offsets(count: int, rate: float, arrivals: Arrivals, seed: int = 0) -> list[float]:
    """Seconds from the start at which each of `count` messages is due (first at 0)."""
    if count < 0 or rate <= 0:
        raise ValueError("count must be >= 0 and rate > 0")
    if count == 0:
        return []
    if arrivals == "uniform":
        return [index / rate for index in range(count)]
    if arrivals != "poisson":
        raise ValueError(f"unknown arrivals {arrivals!r}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, count - 1)
    return [0.0, *np.cumsum(gaps).tolist()]


class Pacer:
    """Sleeps until each message of a schedule is due; the clock and the sleep are injected."""

    def __init__(
        self,
        offsets_s: Sequence[float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.offsets_s = offsets_s
        self.clock = clock
        self.sleep = sleep
        self.started: float | None = None

    def start(self) -> None:
        self.started = self.clock()

    def due(self, index: int) -> float:
        """The clock time at which message `index` is due."""
        if self.started is None:
            raise RuntimeError("the pacer has not started")
        return self.started + self.offsets_s[index]

    def wait(self, index: int) -> float:
        """Wait for message `index`; returns how late it is then (seconds, >= 0)."""
        due = self.due(index)
        now = self.clock()
        if due > now:
            self.sleep(due - now)
            now = self.clock()
        return max(0.0, now - due)

"""The pieces `DriftMonitor` is made of: exact bucket sums, seasonal baselines, the miss stream.

Bucket sums are exact so that a bucket's statistics do not depend on how its transactions were
split or interleaved: each shaped value is rounded to a grid of 2**-32 and added as a Python
integer. Integer addition is associative, so one partition's sums plus another's, in any order
and any grouping, give the same integers, hence the same floats once divided back. The grid is
far below anything a z-score can see (a score of 0.1 moves by less than 1e-9).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from river import drift

from models.drift_config import DriftConfig, Transform

_SCALE_BITS = 32
_SCALE = 1 << _SCALE_BITS
_LIMIT = float(1 << 30)
"""Shaped values are clipped to +-2**30 before rounding (no real feature comes close)."""
_LOGIT_EPS = 1e-6
_DAY_S = 86_400.0
_MIN_MISS_RATE = 0.02
"""Floor of the baseline miss rate when scaling the bits (a near-perfect warm-up is luck)."""


def shape(value: float, how: Transform) -> float | None:
    """The value a signal averages, or None when the transaction has none for it.

    >>> shape(math.e - 1, "log1p")
    1.0
    >>> shape(-1.0, "log1p") is None  # a card's first payment has no time since the previous
    True
    >>> shape(float("nan"), "identity") is None
    True
    """
    if not math.isfinite(value):
        return None
    if how == "log1p":
        return math.log1p(value) if value >= 0.0 else None
    if how == "log1p_day":
        return math.log1p(value) if 0.0 <= value < _DAY_S else None
    if how == "logit":
        p = min(max(value, _LOGIT_EPS), 1.0 - _LOGIT_EPS)
        return math.log(p / (1.0 - p))
    return value


@dataclass(frozen=True)
class BucketStats:
    """One closed bucket, per signal: how many values, their sum and their sum of squares."""

    counts: tuple[int, ...]
    totals: tuple[float, ...]
    squares: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.counts) == len(self.totals) == len(self.squares):
            raise ValueError("counts, totals and squares need one entry per signal")


class BucketSums:
    """Exact, order-independent per-signal sums of one bucket (see the module docstring).

    >>> left, right = BucketSums(1), BucketSums(1)
    >>> for v in (0.1, 0.2):
    ...     left.add((v,))
    >>> right.add((0.3,))
    >>> left.merge(right)
    >>> both = BucketSums(1)
    >>> for v in (0.3, 0.2, 0.1):
    ...     both.add((v,))
    >>> left.stats() == both.stats()
    True
    """

    __slots__ = ("counts", "rows", "squares", "totals")

    def __init__(self, signals: int) -> None:
        self.rows = 0
        self.counts = [0] * signals
        self.totals = [0] * signals
        self.squares = [0] * signals

    def add(self, values: Sequence[float | None]) -> None:
        """One transaction's shaped values (None: no value for that signal)."""
        self.add_rows([values])

    def add_rows(self, rows: Sequence[Sequence[float | None]]) -> None:
        """Many transactions at once (the same integers as adding them one by one)."""
        if not rows:
            return
        self.add_matrix(np.array(rows, dtype=np.float64))  # None becomes nan

    def add_matrix(self, matrix: npt.NDArray[np.float64]) -> None:
        """Rows of a (transactions, signals) matrix, NaN where a transaction has no value."""
        if matrix.shape[1:] != (len(self.counts),):
            raise ValueError(f"expected {len(self.counts)} columns, got shape {matrix.shape}")
        self.rows += len(matrix)
        for i in range(len(self.counts)):
            column = matrix[:, i]
            column = column[~np.isnan(column)]
            grid = np.rint(np.clip(column, -_LIMIT, _LIMIT) * _SCALE).astype(np.int64).tolist()
            self.counts[i] += len(grid)
            self.totals[i] += sum(grid)
            self.squares[i] += sum(map(operator.mul, grid, grid))

    def merge(self, other: BucketSums) -> None:
        self.rows += other.rows
        for i in range(len(self.counts)):
            self.counts[i] += other.counts[i]
            self.totals[i] += other.totals[i]
            self.squares[i] += other.squares[i]

    def stats(self) -> BucketStats:
        """Integer division back to floats: correctly rounded, so equal sums give equal floats."""
        return BucketStats(
            tuple(self.counts),
            tuple(t / _SCALE for t in self.totals),
            tuple(s / (_SCALE * _SCALE) for s in self.squares),
        )


@dataclass
class SeasonalBaseline:
    """Exponentially weighted mean and variance per seasonal slot, at transaction level.

    Per slot: decayed sums of counts (n), of squared weights (for the effective sample size), of
    values and of squares. A bucket's z-score includes the baseline's own standard error, so a
    young baseline is judged leniently rather than wrongly.
    """

    slots: int
    decay: float
    n: np.ndarray = field(init=False)
    n2: np.ndarray = field(init=False)
    s1: np.ndarray = field(init=False)
    s2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.n = np.zeros(self.slots)
        self.n2 = np.zeros(self.slots)
        self.s1 = np.zeros(self.slots)
        self.s2 = np.zeros(self.slots)

    def compare(self, slot: int, count: int, total: float) -> tuple[float, float]:
        """(baseline mean, z-score) of a bucket mean; (nan, 0) while the slot is empty."""
        weight = self.n[slot]
        if weight <= 0.0 or count <= 0:
            return math.nan, 0.0
        mean = self.s1[slot] / weight
        var = max(self.s2[slot] / weight - mean * mean, 1e-12 * (1.0 + mean * mean))
        se2 = var * (1.0 / count + self.n2[slot] / (weight * weight))
        return float(mean), float((total / count - mean) / math.sqrt(se2))

    def add(self, slot: int, count: int, total: float, squares: float) -> None:
        d = self.decay
        self.n[slot] = d * self.n[slot] + count
        self.n2[slot] = d * d * self.n2[slot] + count
        self.s1[slot] = d * self.s1[slot] + total
        self.s2[slot] = d * self.s2[slot] + squares


class MissStream:
    """Miss bits of fraud labels since the last (re)start, and the detectors watching them.

    The first `label_warmup` labels only estimate the baseline miss rate; Page-Hinkley then runs
    on the bits in units of their standard deviation at that rate, so one threshold suits a model
    that misses 5 % of frauds as well as one that misses 40 %. Its reference is the mean of what
    it saw since (River's definition), not the warm-up estimate: a hundred labels estimate a 15 %
    rate only to +-4 points, and a lucky warm-up must not make normal misses look like drift.
    """

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.labels = 0
        self.misses = 0
        self.recent: deque[int] = deque(maxlen=config.miss_window)
        self.baseline_rate = math.nan
        self._scale = 0.0
        self._ph: drift.PageHinkley | None = None
        self._adwin: drift.ADWIN | None = None

    def add(self, missed: int) -> str:
        """Count one fraud label; the name of the detector that fired, or ''."""
        cfg = self.config
        self.labels += 1
        self.misses += missed
        self.recent.append(missed)
        if self._ph is None or self._adwin is None:
            if self.labels >= cfg.label_warmup:
                rate = (self.misses + 0.5) / (self.labels + 1.0)
                rate = min(max(rate, _MIN_MISS_RATE), 1.0 - _MIN_MISS_RATE)
                self.baseline_rate = rate
                self._scale = 1.0 / math.sqrt(rate * (1.0 - rate))
                self._ph = drift.PageHinkley(
                    min_instances=1,
                    delta=cfg.miss_ph_delta,
                    threshold=cfg.miss_ph_threshold,
                    alpha=cfg.miss_ph_alpha,
                    mode="up",
                )
                self._adwin = drift.ADWIN(delta=cfg.miss_adwin_delta, clock=1)
            return ""
        self._ph.update(missed * self._scale)
        self._adwin.update(missed)
        if self._ph.drift_detected:
            return "PageHinkley"
        # ADWIN sees changes both ways; a model that misses less is not drifting away.
        if self._adwin.drift_detected and self.rates()[1] > self.baseline_rate:
            return "ADWIN"
        return ""

    def rates(self) -> tuple[float, float]:
        """(miss rate before the recent window, miss rate in it) since the last (re)start."""
        recent_n = len(self.recent)
        recent_misses = sum(self.recent)
        older_n = self.labels - recent_n
        before = (self.misses - recent_misses) / older_n if older_n > 0 else math.nan
        return before, recent_misses / recent_n if recent_n else math.nan

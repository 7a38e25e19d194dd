"""Every knob of the drift detectors, in one frozen object (`models.drift` has the reasoning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.features import FEATURE_NAMES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

SCORE_SIGNAL = "score"
MISS_SIGNAL = "fraud_miss_rate"

Transform = Literal["identity", "log1p", "log1p_day", "logit"]
"""How a per-transaction value is shaped before it is averaged: `log1p` tames heavy-tailed
amounts and durations (a negative value has no logarithm and is left out: it is the feature's
"none", e.g. the time since the previous payment of a card's first payment); `log1p_day` does
the same for durations in seconds under a day and leaves longer ones out; `logit` spreads scores
near 0 and 1."""


@dataclass(frozen=True)
class DriftConfig:
    """Every knob of `DriftMonitor`; the defaults were tuned with `bench/drift_quality.py`."""

    # -- data drift: bucketed, de-seasonalised means ------------------------------------------
    bucket_ms: int = HOUR_MS
    """Event-time bucket whose mean is one detector input."""
    season_buckets: int = 24
    """Buckets per seasonal period: with hourly buckets, one baseline per hour of day."""
    baseline_periods: float = 14.0
    """Memory of the baselines in periods (days): older buckets weigh 1/e after this many."""
    warmup_buckets: int = 72
    """Closed buckets that only feed the baselines after a start, reset or detection."""
    min_bucket_count: int = 50
    """Buckets with fewer values of a signal feed its baseline but not its detector: the mean of
    a few dozen heavy-tailed values (a fraud's score among near-zero ones) is far from normal."""
    z_clip: float = 8.0
    """Bucket z-scores are clipped to +-z_clip, so one freak bucket cannot fire alone."""
    score_transform: Transform = "identity"
    features: tuple[tuple[str, Transform], ...] = (
        ("amount", "log1p"),
        ("user_tx_count_1h", "identity"),
        ("user_seconds_since_prev", "log1p_day"),
    )
    """Monitored features (names from `models.features.FEATURE_NAMES`) and their transforms.
    The time since the card's previous payment is watched among payments within a day of it:
    bursts live there, while longer gaps are what a worker that started with empty windows
    cannot see yet — their share grows for weeks after a start and looked like drift.
    Event statistics (`mean_before` = the hour's baseline, `mean_after` = the bucket) are in
    transformed units."""
    data_ph_delta: float = 0.5
    """Page-Hinkley slack on the z-scores (the shift in standard errors it ignores)."""
    data_ph_threshold: float = 10.0
    data_ph_alpha: float = 1.0

    # -- concept drift: the miss stream of fraud labels ----------------------------------------
    label_warmup: int = 100
    """Fraud labels that only estimate the baseline miss rate after a start, reset or detection
    (about a day of labels in the simulator's default world)."""
    miss_ph_delta: float = 0.25
    """Page-Hinkley slack, in standard deviations of a miss bit at the baseline rate."""
    miss_ph_threshold: float = 20.0
    miss_ph_alpha: float = 1.0
    miss_adwin_delta: float = 0.002
    miss_window: int = 50
    """Recent fraud labels whose miss rate events and statistics report."""

    # -- debounce --------------------------------------------------------------------------------
    cooldown_ms: int = DAY_MS
    """Event time after a detection during which the same signal cannot fire again."""

    def __post_init__(self) -> None:
        if self.bucket_ms <= 0 or self.season_buckets <= 0:
            raise ValueError("bucket_ms and season_buckets must be positive")
        if self.baseline_periods <= 0 or self.z_clip <= 0:
            raise ValueError("baseline_periods and z_clip must be positive")
        if min(self.warmup_buckets, self.min_bucket_count, self.label_warmup) < 0:
            raise ValueError("warm-ups and minimum counts must not be negative")
        if self.miss_window <= 0 or self.cooldown_ms < 0:
            raise ValueError("miss_window must be positive and cooldown_ms not negative")
        names = [name for name, _ in self.features]
        unknown = sorted(set(names) - set(FEATURE_NAMES))
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"features must be distinct FEATURE_NAMES; unknown: {unknown}")

    @property
    def signals(self) -> tuple[str, ...]:
        """Names of the data-drift signals, in the order their sums are kept."""
        return (SCORE_SIGNAL, *(name for name, _ in self.features))

    @property
    def transforms(self) -> tuple[Transform, ...]:
        return (self.score_transform, *(how for _, how in self.features))


DEFAULT_DRIFT_CONFIG = DriftConfig()
"""The tuned defaults (a frozen value, safe to share)."""

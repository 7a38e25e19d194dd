"""Drift detection on the scored stream: a pure core with River detectors, no I/O.

Two kinds of drift, watched in event time so that a replay gives the same events:

* **Data drift** (per scored transaction, cheap): the score and a few features a new fraud
  pattern moves (amount, velocity, time since the card's previous payment). Traffic has a daily
  rhythm: the mean of `user_tx_count_1h` is 1.02 at midnight and 1.19 at noon in the simulator, a
  dozen standard errors of an hourly mean apart. Measured on 3 x 32 stationary simulated days,
  River detectors fed raw values per event fire all the time (ADWIN on `user_tx_count_1h` ~15
  times a week, Page-Hinkley on log amounts ~35), and hourly means against one all-day baseline
  still ~6 times a week. So values are summed per event-time bucket (an hour); each closed
  bucket's mean is compared with an exponentially weighted baseline of the *same hour of day* and
  turned into a z-score, the baseline's own uncertainty included. Page-Hinkley runs on those
  z-scores, one update per signal and hour. The score is averaged as is: its mean is the model's
  own estimate of the fraud rate, whereas its logit drifts with day-to-day noise in the bulk of
  near-zero scores. A value a transaction does not have (the time since the previous payment of
  a card's first payment) is left out of that signal rather than averaged as a number: otherwise
  the share of first payments, which falls for weeks after a worker starts with empty windows,
  looks like drift.
* **Concept drift** (as labels arrive): the *miss stream*, one bit per fraud label, set when the
  model had approved that fraud. Not the plain error rate over all labels: frauds are reported
  after a delay of about a day and a half while genuine transactions are confirmed only when the
  chargeback window closes (+7-8 days), so an all-label error stream is dominated by week-old
  genuine confirmations (99 % of labels, almost all correct) and reacts to a new fraud pattern a
  week late and diluted a hundredfold. The miss rate among fraud labels is what a pattern the
  model has never seen moves (card testing doubled it from ~15 % to ~30 % in the simulator), and
  it moves as soon as the first victims report. Page-Hinkley (upward only) catches the clumps of
  misses a new pattern produces (a tested card is reported once, with all its payments);
  ADWIN catches slower, sustained rises.

Debounce: a signal is silent for `warmup_buckets` (data) or `label_warmup` fraud labels (concept)
after a start, a reset or its own detection, and for `cooldown_ms` of event time after a
detection. During the data warm-up, the z-scores of hours that already have a baseline prime the
detector's reference level (no events). A detection re-learns that signal's baseline, so a change
that persists becomes the new normal; while it lasts unremedied (no new champion), each signal may
fire again after its warm-up. A data event carries the end of the bucket that fired, a concept
event the label time that fired. Bucket sums are exact (`models.drift_signals.BucketSums`), so
how a bucket's transactions were split into micro-batches or partitions changes nothing.

`DriftMonitor` is fed either closed buckets (`observe_bucket`: what the cluster-wide monitor,
`models.cluster_drift`, does) or scored micro-batches it buckets itself (`observe_scores`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydantic import TypeAdapter
from river import drift

from models.drift_config import (
    DAY_MS,
    DEFAULT_DRIFT_CONFIG,
    HOUR_MS,
    MISS_SIGNAL,
    SCORE_SIGNAL,
    DriftConfig,
    Transform,
)
from models.drift_signals import BucketStats, BucketSums, MissStream, SeasonalBaseline, shape
from models.features import FEATURE_NAMES
from schemas.events import DriftEvent, Identifier, from_epoch_ms

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MISS_SIGNAL",
    "SCORE_SIGNAL",
    "BucketStats",
    "DriftConfig",
    "DriftMonitor",
    "Transform",
]

_VERSION = TypeAdapter(Identifier)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


@dataclass
class _DataSignal:
    name: str
    baseline: SeasonalBaseline
    detector: drift.PageHinkley
    warmup_left: int
    quiet_until_ms: int = -(2**62)
    fed: int = 0
    last_count: int = 0
    last_mean: float = math.nan
    last_baseline: float = math.nan
    last_z: float = 0.0
    recent_z: deque[float] = field(default_factory=lambda: deque(maxlen=24))


class DriftMonitor:
    """Data drift on the score distribution and key features (hourly buckets), concept drift on
    the miss stream of fraud labels. Emits schemas.events.DriftEvent, debounced.

    Feed it in event-time order: closed buckets with `observe_bucket` (or scored micro-batches
    with `observe_scores`), and `observe_label` with each label joined to the score its
    transaction got. Nothing here reads a clock.

    >>> monitor = DriftMonitor("v1")
    >>> monitor.observe_label(labeled_at_ms=0, score=0.1, flagged=False, is_fraud=True)
    []
    >>> stats = BucketStats(counts=(60,) * 4, totals=(3.0, 210.0, 60.0, 600.0),
    ...                     squares=(0.5, 800.0, 60.0, 6100.0))
    >>> monitor.observe_bucket(bucket=0, stats=stats)
    []
    >>> monitor.statistics()["buckets_closed"]
    1.0
    """

    def __init__(self, model_version: str, config: DriftConfig = DEFAULT_DRIFT_CONFIG) -> None:
        self.config = config
        self._feature_index = [FEATURE_NAMES.index(name) for name, _ in config.features]
        self._names = config.signals
        self._transforms = config.transforms
        self._decay = math.exp(-1.0 / (config.baseline_periods * config.season_buckets))
        self.reset(model_version)

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self, model_version: str) -> None:
        """A new champion: fresh detectors and baselines, warm-up again."""
        self.model_version: str = _VERSION.validate_python(model_version)
        self._signals = [self._new_data_signal(name) for name in self._names]
        self._bucket: int | None = None
        self._open: list[tuple[float | None, ...]] = []  # shaped rows of the open bucket
        self._buckets_closed = 0
        self._miss = MissStream(self.config)
        self._miss_quiet_until_ms = -(2**62)

    def _new_data_signal(self, name: str) -> _DataSignal:
        cfg = self.config
        return _DataSignal(
            name=name,
            baseline=SeasonalBaseline(cfg.season_buckets, self._decay),
            detector=drift.PageHinkley(
                min_instances=1,
                delta=cfg.data_ph_delta,
                threshold=cfg.data_ph_threshold,
                alpha=cfg.data_ph_alpha,
                mode="both",
            ),
            warmup_left=cfg.warmup_buckets,
        )

    # -- data drift --------------------------------------------------------------------------
    def observe_scores(
        self,
        event_time_ms: Sequence[int] | NDArray[np.int64],
        scores: Sequence[float] | NDArray[np.float64],
        features: np.ndarray,
    ) -> list[DriftEvent]:
        """One micro-batch of scored transactions; `features` is (n, len(FEATURE_NAMES)) in
        FEATURE_NAMES order. A value that is not finite is left out of its signal. The bucket
        clock only moves forward: a late row counts in the bucket open when it arrives."""
        times = np.asarray(event_time_ms, dtype=np.int64)
        count = times.shape[0]
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.shape != (count, len(FEATURE_NAMES)) or len(scores) != count:
            raise ValueError(
                f"need {count} scores and a ({count}, {len(FEATURE_NAMES)}) feature matrix, got "
                f"{len(scores)} and {matrix.shape}"
            )
        events: list[DriftEvent] = []
        picked = matrix[:, self._feature_index].tolist()
        for t, score, row in zip(times.tolist(), np.asarray(scores).tolist(), picked, strict=True):
            bucket = t // self.config.bucket_ms
            if self._bucket is None:
                self._bucket = bucket
            elif bucket > self._bucket:
                sums = BucketSums(len(self._names))
                sums.add_rows(self._open)
                events += self.observe_bucket(self._bucket, sums.stats())
                self._bucket, self._open = bucket, []
            values = (score, *row)
            self._open.append(
                tuple(shape(v, how) for v, how in zip(values, self._transforms, strict=True))
            )
        return events

    def observe_bucket(self, bucket: int, stats: BucketStats) -> list[DriftEvent]:
        """One closed bucket (index = start // bucket_ms); events carry the bucket's end."""
        cfg = self.config
        if len(stats.counts) != len(self._signals):
            raise ValueError(f"need sums for the signals {self._names}, got {len(stats.counts)}")
        at_ms = (bucket + 1) * cfg.bucket_ms
        slot = bucket % cfg.season_buckets
        events: list[DriftEvent] = []
        for i, signal in enumerate(self._signals):
            count, total, squares = stats.counts[i], stats.totals[i], stats.squares[i]
            if count <= 0:
                continue
            baseline_mean, z = signal.baseline.compare(slot, count, total)
            signal.baseline.add(slot, count, total, squares)
            signal.last_count = count
            signal.last_mean = total / count
            signal.last_baseline = baseline_mean
            signal.last_z = z
            usable = count >= cfg.min_bucket_count and not math.isnan(baseline_mean)
            clipped = min(max(z, -cfg.z_clip), cfg.z_clip)
            if signal.warmup_left > 0:
                signal.warmup_left -= 1
                if usable:  # primes the detector's reference level; no events yet
                    signal.detector.update(clipped)
                continue
            if not usable:
                continue
            signal.recent_z.append(clipped)
            signal.detector.update(clipped)
            signal.fed += 1
            if signal.detector.drift_detected and at_ms >= signal.quiet_until_ms:
                events.append(self._data_event(signal, at_ms, count))
                self._signals[i] = fresh = self._new_data_signal(signal.name)
                fresh.quiet_until_ms = at_ms + cfg.cooldown_ms
        self._buckets_closed += 1
        return events

    def _data_event(self, signal: _DataSignal, at_ms: int, count: int) -> DriftEvent:
        return DriftEvent(
            detector="PageHinkley",
            signal=signal.name,
            model_version=self.model_version,
            detected_at=from_epoch_ms(at_ms),
            statistics={
                "mean_before": _finite(signal.last_baseline),
                "mean_after": _finite(signal.last_mean),
                "z": _finite(signal.last_z),
                "mean_z_recent": _finite(float(np.mean(signal.recent_z))),
                "n": float(count),
                "buckets": float(signal.fed),
                "bucket_hours": self.config.bucket_ms / HOUR_MS,
            },
        )

    # -- concept drift -----------------------------------------------------------------------
    def observe_label(
        self, labeled_at_ms: int, score: float, flagged: bool, is_fraud: bool
    ) -> list[DriftEvent]:
        """A label joined with the score the model gave its transaction (`flagged`: the decision
        was review or decline). Only fraud labels feed the miss stream."""
        if not is_fraud:
            return []
        miss = self._miss
        detector = miss.add(0 if flagged else 1)
        if not detector or labeled_at_ms < self._miss_quiet_until_ms:
            return []
        before, recent = miss.rates()
        event = DriftEvent(
            detector=detector,
            signal=MISS_SIGNAL,
            model_version=self.model_version,
            detected_at=from_epoch_ms(labeled_at_ms),
            statistics={
                "mean_before": _finite(before),
                "mean_after": _finite(recent),
                "baseline_rate": _finite(miss.baseline_rate),
                "n": float(miss.labels),
                "n_recent": float(len(miss.recent)),
                "last_score": _finite(float(score)),
            },
        )
        self._miss = MissStream(self.config)
        self._miss_quiet_until_ms = labeled_at_ms + self.config.cooldown_ms
        return [event]

    # -- observability -----------------------------------------------------------------------
    def statistics(self) -> dict[str, float]:
        """Current window statistics per signal, for metrics and logs (all finite)."""
        stats: dict[str, float] = {
            "buckets_closed": float(self._buckets_closed),
            "open_bucket_count": float(len(self._open)),
        }
        for signal in self._signals:
            prefix = signal.name
            stats[f"{prefix}.bucket_count"] = float(signal.last_count)
            stats[f"{prefix}.bucket_mean"] = _finite(signal.last_mean)
            stats[f"{prefix}.baseline_mean"] = _finite(signal.last_baseline)
            stats[f"{prefix}.z"] = _finite(signal.last_z)
            stats[f"{prefix}.warmup_left"] = float(signal.warmup_left)
        miss = self._miss
        before, recent = miss.rates()
        stats[f"{MISS_SIGNAL}.labels"] = float(miss.labels)
        stats[f"{MISS_SIGNAL}.since_reset"] = _finite(
            miss.misses / miss.labels if miss.labels else math.nan
        )
        stats[f"{MISS_SIGNAL}.baseline"] = _finite(miss.baseline_rate)
        stats[f"{MISS_SIGNAL}.recent"] = _finite(recent)
        stats[f"{MISS_SIGNAL}.before_recent"] = _finite(before)
        stats[f"{MISS_SIGNAL}.warmup_left"] = float(max(0, self.config.label_warmup - miss.labels))
        return stats

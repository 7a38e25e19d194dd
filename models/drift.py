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
  turned into a z-score, the baseline's own uncertainty included (1 false alarm in those 96 days,
  all signals together).
  Page-Hinkley runs on those z-scores, one update per signal and hour, so the per-transaction
  cost is a few vectorised sums. The score is averaged as is: its mean is the model's own
  estimate of the fraud rate, whereas its logit drifts with day-to-day noise in the bulk of
  near-zero scores.
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
fire again after its warm-up, every few days in the benchmark. Every event carries the event time
of the observation that triggered it, and micro-batch boundaries do not move detections (they only
change the order in which a bucket's values are summed, i.e. statistics in the last bits).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import TypeAdapter
from river import drift

from models.features import FEATURE_NAMES
from schemas.events import DriftEvent, FraudScore, Identifier, Label, epoch_ms, from_epoch_ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

SCORE_SIGNAL = "score"
MISS_SIGNAL = "fraud_miss_rate"

Transform = Literal["identity", "log1p", "logit"]
"""How a per-transaction value is shaped before it is averaged: `log1p` tames heavy-tailed
amounts and durations (negative values count as 0), `logit` spreads scores near 0 and 1."""

_VERSION = TypeAdapter(Identifier)
_OFFLINE_BATCH = 500
"""detect_offline feeds scores in micro-batches of this size, as the stream does."""
_LOGIT_EPS = 1e-6
_MIN_MISS_RATE = 0.02
"""Floor of the baseline miss rate when scaling the bits (a near-perfect warm-up is luck)."""


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
    """Buckets with fewer transactions feed the baseline but not the detector: the mean of a few
    dozen heavy-tailed values (a fraud's score among near-zero ones) is far from normal."""
    z_clip: float = 8.0
    """Bucket z-scores are clipped to +-z_clip, so one freak bucket cannot fire alone."""
    score_transform: Transform = "identity"
    features: tuple[tuple[str, Transform], ...] = (
        ("amount", "log1p"),
        ("user_tx_count_1h", "identity"),
        ("user_seconds_since_prev", "log1p"),
    )
    """Monitored features (names from `models.features.FEATURE_NAMES`) and their transforms.
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


def _transform_into(values: np.ndarray, how: Transform, out: np.ndarray) -> None:
    if how == "log1p":
        np.maximum(values, 0.0, out=out)
        np.log1p(out, out=out)
    elif how == "logit":
        np.clip(values, _LOGIT_EPS, 1.0 - _LOGIT_EPS, out=out)
        np.log(out / (1.0 - out), out=out)
    else:
        out[:] = values


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


@dataclass
class _SeasonalBaseline:
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
        return mean, (total / count - mean) / math.sqrt(se2)

    def add(self, slot: int, count: int, total: float, squares: float) -> None:
        d = self.decay
        self.n[slot] = d * self.n[slot] + count
        self.n2[slot] = d * d * self.n2[slot] + count
        self.s1[slot] = d * self.s1[slot] + total
        self.s2[slot] = d * self.s2[slot] + squares


@dataclass
class _DataSignal:
    name: str
    baseline: _SeasonalBaseline
    detector: drift.PageHinkley
    warmup_left: int
    quiet_until_ms: int = -(2**62)
    fed: int = 0
    last_mean: float = math.nan
    last_baseline: float = math.nan
    last_z: float = 0.0
    recent_z: deque[float] = field(default_factory=lambda: deque(maxlen=24))


class _MissStream:
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


class DriftMonitor:
    """Data drift on the score distribution and key features (per event, cheap), concept drift on
    the label-error stream (as labels arrive). Emits schemas.events.DriftEvent, debounced.

    Feed it in (roughly) event-time order: `observe_scores` with each scored micro-batch,
    `observe_label` with each label joined to the score its transaction got. A late transaction
    counts in the bucket open when it arrives; nothing here reads a clock.

    >>> monitor = DriftMonitor("v1")
    >>> monitor.observe_label(labeled_at_ms=0, score=0.1, flagged=False, is_fraud=True)
    []
    """

    def __init__(self, model_version: str, config: DriftConfig = DriftConfig()) -> None:
        self.config = config
        self._feature_index = np.array(
            [FEATURE_NAMES.index(name) for name, _ in config.features], dtype=np.int64
        )
        self._names = (SCORE_SIGNAL, *(name for name, _ in config.features))
        self._transforms: tuple[Transform, ...] = (
            config.score_transform,
            *(how for _, how in config.features),
        )
        self._decay = math.exp(-1.0 / (config.baseline_periods * config.season_buckets))
        self.reset(model_version)

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self, model_version: str) -> None:
        """A new champion: fresh detectors and baselines, warm-up again."""
        self.model_version: str = _VERSION.validate_python(model_version)
        self._signals = [self._new_data_signal(name) for name in self._names]
        self._bucket: int | None = None
        self._count = 0
        self._sums = np.zeros(len(self._names))
        self._squares = np.zeros(len(self._names))
        self._buckets_closed = 0
        self._reset_miss()
        self._miss_quiet_until_ms = -(2**62)

    def _new_data_signal(self, name: str) -> _DataSignal:
        cfg = self.config
        return _DataSignal(
            name=name,
            baseline=_SeasonalBaseline(cfg.season_buckets, self._decay),
            detector=self._data_detector(),
            warmup_left=cfg.warmup_buckets,
        )

    def _data_detector(self) -> drift.PageHinkley:
        cfg = self.config
        return drift.PageHinkley(
            min_instances=1,
            delta=cfg.data_ph_delta,
            threshold=cfg.data_ph_threshold,
            alpha=cfg.data_ph_alpha,
            mode="both",
        )

    def _reset_miss(self) -> None:
        self._miss = _MissStream(self.config)

    # -- data drift --------------------------------------------------------------------------
    def observe_scores(
        self,
        event_time_ms: Sequence[int] | NDArray[np.int64],
        scores: Sequence[float] | NDArray[np.float64],
        features: np.ndarray,
    ) -> list[DriftEvent]:
        """One micro-batch of scored transactions; `features` is (n, len(FEATURE_NAMES)) in
        FEATURE_NAMES order. Rows with a non-finite value are ignored."""
        times = np.asarray(event_time_ms, dtype=np.int64)
        count = times.shape[0]
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.shape != (count, len(FEATURE_NAMES)) or len(scores) != count:
            raise ValueError(
                f"need {count} scores and a ({count}, {len(FEATURE_NAMES)}) feature matrix, got "
                f"{len(scores)} and {matrix.shape}"
            )
        if count == 0:
            return []
        # One row per signal, so that each signal's values are contiguous.
        values = np.empty((len(self._transforms), count))
        _transform_into(np.asarray(scores, dtype=np.float64), self._transforms[0], values[0])
        picked = matrix[:, self._feature_index].T
        for row, how in enumerate(self._transforms[1:]):
            _transform_into(picked[row], how, values[row + 1])
        squares = values * values
        sums, square_sums = values.sum(axis=1), squares.sum(axis=1)
        if not (np.isfinite(sums).all() and np.isfinite(square_sums).all()):
            keep = np.isfinite(squares).all(axis=0)
            times, values, squares = times[keep], values[:, keep], squares[:, keep]
            if times.shape[0] == 0:
                return []
            sums, square_sums = values.sum(axis=1), squares.sum(axis=1)
        # The bucket clock only moves forward: a late row counts in the open bucket.
        bucket_ms = self.config.bucket_ms
        if self._bucket is not None and int(times.max()) // bucket_ms <= self._bucket:
            self._add(times.shape[0], sums, square_sums)  # the common case: no bucket closes
            return []
        buckets = times // bucket_ms
        if self._bucket is not None:
            buckets[0] = max(int(buckets[0]), self._bucket)
        buckets = np.maximum.accumulate(buckets)
        starts = np.concatenate(([0], np.flatnonzero(buckets[1:] != buckets[:-1]) + 1))
        part_sums = np.add.reduceat(values, starts, axis=1)
        part_squares = np.add.reduceat(squares, starts, axis=1)
        ends = [*starts[1:].tolist(), times.shape[0]]
        events: list[DriftEvent] = []
        for part, (start, end) in enumerate(zip(starts.tolist(), ends, strict=True)):
            bucket = int(buckets[start])
            if self._bucket != bucket:
                if self._bucket is not None:
                    events += self._close_bucket(int(times[start]))
                self._bucket = bucket
            self._add(end - start, part_sums[:, part], part_squares[:, part])
        return events

    def _add(self, count: int, sums: np.ndarray, squares: np.ndarray) -> None:
        self._count += count
        self._sums += sums
        self._squares += squares

    def _close_bucket(self, trigger_ms: int) -> list[DriftEvent]:
        assert self._bucket is not None  # noqa: S101 - only called with an open bucket
        cfg = self.config
        slot = self._bucket % cfg.season_buckets
        count = self._count
        events: list[DriftEvent] = []
        for i, signal in enumerate(self._signals):
            total, squares = float(self._sums[i]), float(self._squares[i])
            baseline_mean, z = signal.baseline.compare(slot, count, total)
            signal.baseline.add(slot, count, total, squares)
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
            if signal.detector.drift_detected and trigger_ms >= signal.quiet_until_ms:
                events.append(self._data_event(signal, trigger_ms, count))
                self._signals[i] = fresh = self._new_data_signal(signal.name)
                fresh.quiet_until_ms = trigger_ms + cfg.cooldown_ms
        self._buckets_closed += 1
        self._count = 0
        self._sums[:] = 0.0
        self._squares[:] = 0.0
        return events

    def _data_event(self, signal: _DataSignal, trigger_ms: int, count: int) -> DriftEvent:
        return DriftEvent(
            detector="PageHinkley",
            signal=signal.name,
            model_version=self.model_version,
            detected_at=from_epoch_ms(trigger_ms),
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
        self._reset_miss()
        self._miss_quiet_until_ms = labeled_at_ms + self.config.cooldown_ms
        return [event]

    # -- observability -----------------------------------------------------------------------
    def statistics(self) -> dict[str, float]:
        """Current window statistics per signal, for metrics and logs (all finite)."""
        stats: dict[str, float] = {
            "buckets_closed": float(self._buckets_closed),
            "open_bucket_count": float(self._count),
        }
        for signal in self._signals:
            prefix = signal.name
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


def detect_offline(
    scores: Iterable[FraudScore],
    labels: Iterable[Label],
    config: DriftConfig = DriftConfig(),
) -> list[DriftEvent]:
    """Replay scores (by event time) and labels (by labeled_at) through one `DriftMonitor`.

    Labels without `labeled_at`, or whose transaction was not scored, are skipped; so are labels
    of transactions another model version scored than the one being monitored when the label
    arrives (their misses belong to that model). The monitor is reset whenever the scores'
    model version changes. Ties in time: scores first, then input order; a transaction scored
    twice counts with its earliest score.
    """
    ordered = sorted(scores, key=lambda s: epoch_ms(s.event_time))
    times = [epoch_ms(s.event_time) for s in ordered]
    scored: dict[str, FraudScore] = {}
    for record in ordered:
        scored.setdefault(record.transaction_id, record)
    arrivals = sorted(
        (
            (epoch_ms(label.labeled_at), label.is_fraud, scored[label.transaction_id])
            for label in labels
            if label.labeled_at is not None and label.transaction_id in scored
        ),
        key=lambda row: row[0],
    )
    monitor: DriftMonitor | None = None
    events: list[DriftEvent] = []
    i = k = 0
    while i < len(ordered) or k < len(arrivals):
        if k < len(arrivals) and (i == len(ordered) or arrivals[k][0] < times[i]):
            labeled_at, is_fraud, record = arrivals[k]
            k += 1
            if monitor is not None and record.model_version == monitor.model_version:
                flagged = record.decision != "approve"
                events += monitor.observe_label(labeled_at, record.score, flagged, is_fraud)
            continue
        limit = arrivals[k][0] if k < len(arrivals) else times[-1]
        version = ordered[i].model_version
        end = i
        while (
            end < len(ordered)
            and end - i < _OFFLINE_BATCH
            and times[end] <= limit
            and ordered[end].model_version == version
        ):
            end += 1
        if monitor is None:
            monitor = DriftMonitor(version, config)
        elif monitor.model_version != version:
            monitor.reset(version)
        chunk = ordered[i:end]
        matrix = np.array(
            [[s.features.get(name, math.nan) for name in FEATURE_NAMES] for s in chunk],
            dtype=np.float64,
        ).reshape(len(chunk), len(FEATURE_NAMES))
        events += monitor.observe_scores(times[i:end], [s.score for s in chunk], matrix)
        i = end
    return events

"""Drift core: quiet on stationary (seasonal) traffic, one event per change, replayable."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import numpy as np
import pytest

from models.drift import MISS_SIGNAL, SCORE_SIGNAL, DriftConfig, DriftMonitor
from models.drift_replay import detect_offline
from models.features import FEATURE_NAMES
from schemas.events import DriftEvent, FraudScore, Label, epoch_ms, from_epoch_ms

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
N_FEATURES = len(FEATURE_NAMES)
AMOUNT = FEATURE_NAMES.index("amount")
COUNT_1H = FEATURE_NAMES.index("user_tx_count_1h")
SINCE_PREV = FEATURE_NAMES.index("user_seconds_since_prev")


@dataclasses.dataclass
class Traffic:
    times: np.ndarray
    scores: np.ndarray
    features: np.ndarray


def traffic(days: float, seed: int = 0, start_ms: int = T0) -> Traffic:
    """Scored transactions with a daily rhythm: volume, velocity and scores all peak at noon."""
    rng = np.random.default_rng(seed)
    chunks = []
    for hour in range(int(days * 24)):
        count = int(60 + 240 * math.exp(-0.5 * ((hour % 24 - 12) / 4) ** 2))
        chunks.append(start_ms + hour * HOUR + np.sort(rng.integers(0, HOUR, count)))
    times = np.concatenate(chunks)
    season = np.exp(-0.5 * (((times // HOUR) % 24 - 12) / 4) ** 2)
    n = times.shape[0]
    features = np.zeros((n, N_FEATURES))
    features[:, AMOUNT] = rng.lognormal(3.5, 0.8, n)
    features[:, COUNT_1H] = 1 + rng.poisson(0.05 + 0.25 * season)
    features[:, SINCE_PREV] = rng.exponential(40_000 / (0.5 + season))
    scores = np.asarray(rng.beta(1.0, 40.0 - 15.0 * season), dtype=np.float64)
    return Traffic(times, scores, features)


def feed(monitor: DriftMonitor, data: Traffic, batch: int = 500) -> list[DriftEvent]:
    events: list[DriftEvent] = []
    for start in range(0, data.times.shape[0], batch):
        end = start + batch
        events += monitor.observe_scores(
            data.times[start:end].tolist(), data.scores[start:end], data.features[start:end]
        )
    return events


def fraud_labels(
    count: int, miss_before: float, miss_after: float, change_at: int, seed: int = 0
) -> list[tuple[int, bool]]:
    """(labeled_at, missed) for fraud labels every 15 minutes; the miss rate changes at index."""
    rng = random.Random(seed)
    return [
        (T0 + i * 15 * 60_000, rng.random() < (miss_before if i < change_at else miss_after))
        for i in range(count)
    ]


def feed_labels(monitor: DriftMonitor, labels: list[tuple[int, bool]]) -> list[DriftEvent]:
    events: list[DriftEvent] = []
    for labeled_at, missed in labels:
        events += monitor.observe_label(labeled_at, 0.01 if missed else 0.9, not missed, True)
        # genuine confirmations in between do not feed the miss stream
        events += monitor.observe_label(labeled_at, 0.01, False, False)
    return events


def step_scores(data: Traffic, from_ms: int, factor: float) -> Traffic:
    scores = np.where(data.times >= from_ms, np.minimum(data.scores * factor, 1.0), data.scores)
    return Traffic(data.times, scores, data.features)


# -- data drift ------------------------------------------------------------------------------
def test_stationary_seasonal_traffic_raises_no_event() -> None:
    monitor = DriftMonitor("v1")
    assert feed(monitor, traffic(days=9)) == []
    assert monitor.statistics()["buckets_closed"] == 9 * 24 - 1


def test_without_seasonal_baselines_the_daily_rhythm_would_look_like_drift() -> None:
    # The same stream with one baseline for all hours: the rhythm alone fires detectors.
    monitor = DriftMonitor("v1", DriftConfig(season_buckets=1))
    assert len(feed(monitor, traffic(days=6))) > 0


def test_a_step_in_the_scores_gives_exactly_one_score_event_soon_after() -> None:
    change = T0 + 5 * DAY + 9 * HOUR
    data = step_scores(traffic(days=10), change, factor=1.6)
    events = feed(DriftMonitor("v7"), data)
    assert [(e.signal, e.detector, e.model_version) for e in events] == [
        (SCORE_SIGNAL, "PageHinkley", "v7")
    ]
    detected = epoch_ms(events[0].detected_at)
    assert change <= detected <= change + 4 * HOUR
    stats = events[0].statistics
    assert stats["mean_after"] > stats["mean_before"]
    assert stats["n"] > 0 and all(math.isfinite(v) for v in stats.values())


def test_micro_batch_size_does_not_change_the_events() -> None:
    data = step_scores(traffic(days=6), T0 + 4 * DAY, factor=1.6)
    small = feed(DriftMonitor("v1"), data, batch=61)
    large = feed(DriftMonitor("v1"), data, batch=500)
    assert [(e.detected_at, e.signal, e.detector) for e in small] == [
        (e.detected_at, e.signal, e.detector) for e in large
    ]
    assert small and small[0].statistics == pytest.approx(large[0].statistics, rel=1e-9)
    assert feed(DriftMonitor("v1"), data, batch=61) == small  # same batches: same events


def test_a_velocity_burst_pattern_is_seen_on_the_count_feature() -> None:
    data = traffic(days=9)
    burst = (data.times >= T0 + 6 * DAY) & (np.arange(data.times.shape[0]) % 40 == 0)
    data.features[burst, COUNT_1H] = 8.0  # card testing: many payments within the hour
    events = feed(DriftMonitor("v1"), data)
    assert [e.signal for e in events] == ["user_tx_count_1h"]
    assert epoch_ms(events[0].detected_at) >= T0 + 6 * DAY


def test_values_a_transaction_lacks_are_left_out_of_their_signal_only() -> None:
    data = traffic(days=3)
    data.features[::50, AMOUNT] = np.nan
    data.scores[::70] = 1.0  # certain scores: their logit is clipped, not infinite
    data.scores[1::70] = 0.0
    monitor = DriftMonitor("v1", DriftConfig(score_transform="logit"))
    feed(monitor, data)
    stats = monitor.statistics()
    assert stats["buckets_closed"] == 3 * 24 - 1
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())

    fresh = DriftMonitor("v1")
    rows = np.ones((11, N_FEATURES))
    rows[[1, 4, 7], SINCE_PREV] = np.inf
    rows[[2, 5], SINCE_PREV] = -1.0  # a card's first payment: no time since the previous one
    times = [T0] * 10 + [T0 + HOUR]  # the last row closes the first hour
    assert fresh.observe_scores(times, [0.1] * 11, rows) == []
    stats = fresh.statistics()
    assert stats["open_bucket_count"] == 1
    assert stats["user_seconds_since_prev.bucket_count"] == 5
    assert stats["amount.bucket_count"] == stats[f"{SCORE_SIGNAL}.bucket_count"] == 10
    assert fresh.observe_scores([], [], np.zeros((0, N_FEATURES))) == []


def test_a_malformed_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="feature matrix"):
        DriftMonitor("v1").observe_scores([T0, T0], [0.1, 0.2], np.zeros((2, 3)))


def test_unknown_feature_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no_such_feature"):
        DriftConfig(features=(("no_such_feature", "identity"),))


# -- concept drift ---------------------------------------------------------------------------
def test_a_jump_in_the_miss_rate_of_fraud_labels_gives_one_concept_event() -> None:
    labels = fraud_labels(900, miss_before=0.15, miss_after=0.5, change_at=500)
    events = feed_labels(DriftMonitor("v3"), labels)
    assert [(e.signal, e.model_version) for e in events] == [(MISS_SIGNAL, "v3")]
    detected = epoch_ms(events[0].detected_at)
    change = labels[500][0]
    assert change <= detected <= change + DAY
    stats = events[0].statistics
    assert stats["mean_after"] > stats["mean_before"]


def test_a_steady_miss_rate_raises_no_event() -> None:
    monitor = DriftMonitor("v1")
    assert feed_labels(monitor, fraud_labels(2000, 0.15, 0.15, 0, seed=3)) == []
    assert monitor.statistics()[f"{MISS_SIGNAL}.since_reset"] == pytest.approx(0.15, abs=0.03)


def test_a_falling_miss_rate_is_not_reported() -> None:
    labels = fraud_labels(900, miss_before=0.4, miss_after=0.05, change_at=400)
    assert feed_labels(DriftMonitor("v1"), labels) == []


# -- debounce and reset ----------------------------------------------------------------------
def test_a_persisting_change_does_not_fire_again_within_the_cooldown() -> None:
    # A ramp keeps moving the scores; short warm-ups would let the detector fire every few hours.
    data = traffic(days=9)
    ramp = np.clip((data.times - (T0 + 4 * DAY)) / (2 * HOUR), 0, None)
    data = Traffic(data.times, np.minimum(data.scores * (1 + 0.4 * ramp), 1.0), data.features)
    quick = DriftConfig(warmup_buckets=3)
    no_cooldown = feed(DriftMonitor("v1", dataclasses.replace(quick, cooldown_ms=0)), data)
    assert sum(e.signal == SCORE_SIGNAL for e in no_cooldown) > 2
    cooldown = 2 * DAY
    events = feed(DriftMonitor("v1", dataclasses.replace(quick, cooldown_ms=cooldown)), data)
    fired = [epoch_ms(e.detected_at) for e in events if e.signal == SCORE_SIGNAL]
    assert fired and all(b - a >= cooldown for a, b in itertools.pairwise(fired))


def test_reset_restarts_the_warm_up_and_uses_the_new_model_version() -> None:
    reset_at, change, later = T0 + 3 * DAY, T0 + 3 * DAY + 12 * HOUR, T0 + 7 * DAY
    data = step_scores(step_scores(traffic(days=9), change, 1.6), later, 1.6)
    before = data.times < reset_at
    first = Traffic(data.times[before], data.scores[before], data.features[before])
    rest = Traffic(data.times[~before], data.scores[~before], data.features[~before])

    kept = DriftMonitor("v1")
    assert feed(kept, first) == []
    seen = feed(kept, rest)
    assert seen[0].model_version == "v1"
    assert change <= epoch_ms(seen[0].detected_at) <= change + 4 * HOUR

    renewed = DriftMonitor("v1")
    feed(renewed, first)
    renewed.reset("v2")
    stats = renewed.statistics()
    assert stats[f"{SCORE_SIGNAL}.warmup_left"] == DriftConfig().warmup_buckets
    assert stats[f"{MISS_SIGNAL}.warmup_left"] == DriftConfig().label_warmup
    assert stats["buckets_closed"] == 0
    # The first step falls into the new warm-up and is learned as the new champion's normal;
    # the second one is reported, for the new champion.
    events = feed(renewed, rest)
    assert [e.model_version for e in events] == ["v2"]
    assert later <= epoch_ms(events[0].detected_at) <= later + 4 * HOUR


def test_the_label_warm_up_holds_back_early_detections() -> None:
    labels = fraud_labels(300, miss_before=0.0, miss_after=1.0, change_at=40)
    assert feed_labels(DriftMonitor("v1", DriftConfig(label_warmup=1000)), labels) == []
    assert feed_labels(DriftMonitor("v1", DriftConfig(label_warmup=20)), labels) != []


def test_invalid_model_version_is_refused() -> None:
    with pytest.raises(ValueError):
        DriftMonitor("not a version")


# -- offline replay --------------------------------------------------------------------------
def _score(tx: str, t_ms: int, score: float, version: str) -> FraudScore:
    features = dict.fromkeys(FEATURE_NAMES, 1.0)
    features["amount"] = 40.0
    return FraudScore(
        transaction_id=tx,
        user_id="u1",
        score=score,
        decision="review" if score >= 0.5 else "approve",
        model_version=version,
        reasons=[],
        features=features,
        event_time=from_epoch_ms(t_ms),
        scored_at=from_epoch_ms(t_ms),
        latency_ms=0.0,
    )


def _replay_records(
    version_change_ms: int | None,
) -> tuple[list[FraudScore], list[Label]]:
    """Fraud transactions every 15 min for 8 days, labelled 6 h later; misses jump at day 4."""
    labels_in = fraud_labels(8 * 96, miss_before=0.15, miss_after=0.6, change_at=4 * 96)
    scores, labels = [], []
    for i, (t_ms, missed) in enumerate(labels_in):
        version = "v2" if version_change_ms is not None and t_ms >= version_change_ms else "v1"
        scores.append(_score(f"tx{i}", t_ms, 0.1 if missed else 0.9, version))
        labels.append(
            Label(transaction_id=f"tx{i}", is_fraud=True, labeled_at=from_epoch_ms(t_ms + 6 * HOUR))
        )
    return scores, labels


def test_detect_offline_merges_streams_by_time_and_is_deterministic() -> None:
    scores, labels = _replay_records(version_change_ms=None)
    extra = [
        Label(transaction_id="tx0", is_fraud=True),  # no labeled_at: skipped
        Label(transaction_id="unknown", is_fraud=True, labeled_at=from_epoch_ms(T0 + DAY)),
    ]
    events = detect_offline(scores, [*labels, *extra])
    concept = [e for e in events if e.signal == MISS_SIGNAL]
    assert [(e.detector, e.model_version) for e in concept] == [("PageHinkley", "v1")]
    assert concept[0].detected_at >= from_epoch_ms(T0 + 4 * DAY + 6 * HOUR)
    assert concept[0].detected_at <= from_epoch_ms(T0 + 5 * DAY + 6 * HOUR)
    shuffled_scores, shuffled_labels = scores[::-1], labels[::-1]
    random.Random(1).shuffle(shuffled_labels)
    assert detect_offline(shuffled_scores, shuffled_labels) == events


def _two_models(switch_ms: int, seed: int = 0) -> tuple[list[FraudScore], list[Label]]:
    """v1 until `switch_ms`, then v2; frauds every 15 min for 8 days, labelled an hour later,
    except that v1's frauds of days 2-4 are missed far more often and reported 4 days late."""
    rng = random.Random(seed)
    scores, labels = [], []
    for i in range(8 * 96):
        t_ms = T0 + i * 15 * 60_000
        bad = 2 * 96 <= i < 4 * 96
        missed = rng.random() < (0.7 if bad else 0.15)
        version = "v1" if t_ms < switch_ms else "v2"
        scores.append(_score(f"tx{i}", t_ms, 0.1 if missed else 0.9, version))
        labeled_at = from_epoch_ms(t_ms + (4 * DAY if bad else HOUR))
        labels.append(Label(transaction_id=f"tx{i}", is_fraud=True, labeled_at=labeled_at))
    return scores, labels


def test_detect_offline_judges_each_model_only_by_its_own_transactions() -> None:
    # Without a new model, v1's late-reported misses (arriving days 6-8) are its concept drift.
    events = detect_offline(*_two_models(switch_ms=T0 + 9 * DAY))
    assert [(e.signal, e.model_version) for e in events] == [(MISS_SIGNAL, "v1")]
    assert from_epoch_ms(T0 + 6 * DAY) <= events[0].detected_at <= from_epoch_ms(T0 + 7 * DAY)
    # With v2 from day 4 on, those labels belong to v1 and are skipped: v2 misses no more than
    # before, so nothing fires; v2 also starts with a fresh warm-up.
    assert detect_offline(*_two_models(switch_ms=T0 + 4 * DAY)) == []
    assert detect_offline([], _two_models(switch_ms=T0)[1]) == []

"""The label/score join and online quality: bounded, order-independent, honest about gaps."""

from __future__ import annotations

import math

from models.feedback import DAY_MS, FeedbackJoin, OnlineQuality, Scored


def scored(t_ms: int, score: float = 0.5, version: str = "v1", **kw: object) -> Scored:
    return Scored(
        event_time_ms=t_ms, score=score, flagged=score >= 0.5, model_version=version, **kw
    )  # type: ignore[arg-type]


def test_label_after_score_joins_once() -> None:
    join = FeedbackJoin()
    assert join.add_score("t1", scored(1_000)) is None
    joined = join.add_label("t1", True, 2 * DAY_MS)
    assert joined is not None and joined.is_fraud and joined.scored.score == 0.5
    assert join.add_label("t1", True, 2 * DAY_MS) is None  # a repeated label counts once
    assert join.counts.repeated_labels == 1
    assert len(join) == 0


def test_label_before_score_waits_for_it() -> None:
    join = FeedbackJoin()
    assert join.add_label("t1", False, 5_000) is None
    assert join.pending_labels == 1
    joined = join.add_score("t1", scored(1_000))
    assert joined is not None and joined.is_fraud is False and joined.labeled_at_ms == 5_000
    assert join.pending_labels == 0


def test_memory_is_bounded_by_horizon_and_count() -> None:
    join = FeedbackJoin(horizon_ms=10 * DAY_MS, max_scores=100, max_pending_labels=10)
    for i in range(500):
        join.add_score(f"t{i}", scored(i * 1_000))
    assert len(join) == 100
    assert join.counts.expired_scores == 400
    join.add_score("late", scored(30 * DAY_MS))  # everything older than 20 days goes
    assert len(join) == 1
    for i in range(50):
        join.add_label(f"x{i}", True, 30 * DAY_MS)
    assert join.pending_labels == 10
    assert join.counts.expired_labels == 40


def test_online_quality_per_model_and_shadow() -> None:
    quality = OnlineQuality(window=4)
    join = FeedbackJoin()
    rows = [
        ("a", 0.9, True),
        ("b", 0.2, False),
        ("c", 0.7, False),
        ("d", 0.1, True),
        ("e", 0.05, False),
    ]
    for tid, score, fraud in rows:
        join.add_score(
            tid,
            scored(
                0, score, shadow_version="v2", shadow_score=1 - score, shadow_flagged=score < 0.5
            ),
        )
        joined = join.add_label(tid, fraud, 1)
        assert joined is not None
        quality.add_joined(joined)
    report = quality.report()
    champion = report["v1"]  # window of 4: b, c, d, e
    assert champion["labelled"] == 4 and champion["frauds"] == 1
    assert champion["precision"] == 0.0 and champion["recall"] == 0.0  # flagged only c
    assert math.isclose(champion["average_precision"], 1 / 3)  # d ranks below b and c
    assert report["v2"]["recall"] == 1.0  # the shadow flags d


def test_quality_leaves_undefined_metrics_out() -> None:
    quality = OnlineQuality()
    quality.add("v1", 0.1, False, False)
    assert quality.report() == {"v1": {"labelled": 1.0, "frauds": 0.0}}

"""Canary guardrails: each breach rolls back with its numbers, a clean step passes only after
its hold and its minimum of challenger decisions, the last step promotes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import orjson
import pytest

from models.canary_guard import CanaryGuard, GuardrailConfig, Observation, epoch_s
from models.registry import Rollout

CONFIG = GuardrailConfig(
    max_flag_ratio=1.5,
    flag_slack=0.01,
    max_ks=0.35,
    max_error_share=0.001,
    max_latency_p99_ms=2500.0,
    min_labelled_frauds=20,
    max_recall_drop=0.10,
    max_precision_drop=0.10,
)
START = "2026-01-01T00:00:00Z"
T0 = epoch_s(START)
_ids = itertools.count()


def rollout(step: int = 0, hold_s: float = 60.0, min_decisions: int = 50) -> Rollout:
    return Rollout(
        rollout="v2-canary1",
        version="v2",
        champion="v1",
        steps=(10.0, 50.0, 100.0),
        step=step,
        hold_s=hold_s,
        min_decisions=min_decisions,
        started_at=START,
        step_started_at=START,
    )


def obs(
    arm: str,
    champion: float = 0.05,
    challenger: float = 0.05,
    threshold: float = 0.5,
    step: int = 0,
    latency_ms: float = 20.0,
    fallback: bool = False,
    tx: str | None = None,
) -> Observation:
    mine, theirs = (challenger, champion) if arm == "challenger" else (champion, challenger)
    return Observation(
        transaction_id=tx or f"t{next(_ids)}",
        step=step,
        arm=arm,  # type: ignore[arg-type]
        decided_score=mine,
        decided_flag=mine >= threshold,
        other_score=None if fallback else theirs,
        other_flag=None if fallback else theirs >= threshold,
        latency_ms=latency_ms,
        fallback=fallback,
    )


def feed(guard: CanaryGuard, n_challenger: int, n_champion: int, **kw: object) -> None:
    for _ in range(n_challenger):
        guard.add_score(obs("challenger", **kw))  # type: ignore[arg-type]
    for _ in range(n_champion):
        guard.add_score(obs("champion", **kw))  # type: ignore[arg-type]


def test_a_challenger_that_flags_far_more_is_rolled_back_once_it_has_decided_enough() -> None:
    guard = CanaryGuard(rollout(), CONFIG)
    feed(guard, 49, 400, champion=0.1, challenger=0.9)
    assert guard.verdict(T0 + 1) is None, "judged before min_decisions challenger decisions"
    feed(guard, 1, 0, champion=0.1, challenger=0.9)
    verdict = guard.verdict(T0 + 1)  # before the hold ends: a breach acts at once
    assert verdict is not None and verdict.action == "rollback"
    assert "flagged share 1.000 vs the champion's 0.000" in verdict.reason
    assert verdict.evidence["flagged_share_challenger"] == 1.0
    assert verdict.evidence["flagged_share_champion"] == 0.0
    assert verdict.evidence["decisions_challenger_arm"] == 50
    assert verdict.evidence["flagged_share_challenger_arm"] == 1.0


def test_a_clean_step_passes_after_its_hold_and_the_last_step_promotes() -> None:
    guard = CanaryGuard(rollout(hold_s=60), CONFIG)
    feed(guard, 60, 500)
    assert guard.verdict(T0 + 59) is None, "passed before its hold"
    verdict = guard.verdict(T0 + 60)
    assert verdict is not None and verdict.action == "advance", verdict
    assert "60 challenger decisions" in verdict.reason
    guard.follow(rollout(step=1))
    assert guard.verdict(T0 + 61) is None, "the new step has no decisions of its own yet"
    feed(guard, 60, 60, step=1)
    assert guard.verdict(T0 + 61).action == "advance"  # type: ignore[union-attr]
    guard.follow(rollout(step=2))
    feed(guard, 60, 0, step=2)
    last = guard.verdict(T0 + 62)
    assert last is not None and last.action == "promote"
    assert last.evidence["decisions_champion_arm"] == 0
    assert last.evidence["flagged_share_champion"] == 0.0  # from the champion's own opinion


def test_repeated_copies_of_a_score_count_once() -> None:
    guard = CanaryGuard(rollout(min_decisions=2), CONFIG)
    for _ in range(5):
        guard.add_score(obs("challenger", tx="same"))
    assert guard.decisions() == {"champion": 0, "challenger": 1} and guard.repeats == 4


def test_a_score_distribution_shift_breaches_even_without_more_flags() -> None:
    guard = CanaryGuard(rollout(), CONFIG)
    feed(guard, 100, 100, champion=0.01, challenger=0.3)  # nobody flagged at 0.5
    verdict = guard.verdict(T0 + 1)
    assert verdict is not None and verdict.action == "rollback"
    assert "KS 1.000 > 0.35" in verdict.reason and "flagged share" not in verdict.reason


def test_challenger_errors_breach() -> None:
    guard = CanaryGuard(rollout(), CONFIG)
    feed(guard, 99, 100)
    guard.add_score(obs("challenger", fallback=True))
    verdict = guard.verdict(T0 + 1)
    assert verdict is not None and "challenger errors: 1 of" in verdict.reason


def test_latency_breach() -> None:
    guard = CanaryGuard(rollout(), CONFIG)
    feed(guard, 100, 100, latency_ms=4000.0)
    verdict = guard.verdict(T0 + 1)
    assert verdict is not None and "latency p99 4000 ms > 2500 ms" in verdict.reason


def test_precision_and_recall_count_once_enough_frauds_are_labelled() -> None:
    """The challenger misses the frauds the champion catches: judged once 20 are labelled."""
    guard = CanaryGuard(rollout(), CONFIG)
    feed(guard, 100, 400)
    frauds = [obs("champion", champion=0.9, challenger=0.1) for _ in range(20)]
    for found in frauds:
        guard.add_score(found)
    for found in frauds[:19]:
        guard.add_label(found.transaction_id, True)
    verdict = guard.verdict(T0 + 120)
    assert verdict is not None and verdict.action == "advance", verdict
    assert verdict.evidence["recall_champion"] == 1.0
    assert verdict.evidence["recall_challenger"] == 0.0
    guard.add_label(frauds[19].transaction_id, True)
    breached = guard.verdict(T0 + 120)
    assert breached is not None and breached.action == "rollback"
    assert "recall 0.000 vs the champion's 1.000 on 20 labelled" in breached.reason
    assert breached.evidence["labelled_frauds"] == 20


@pytest.mark.parametrize("breach", ["flags", "ks", "errors", "latency"])
def test_within_the_limits_nothing_breaches(breach: str) -> None:
    loose = replace(
        CONFIG,
        max_flag_ratio=100.0,
        flag_slack=1.0,
        max_ks=1.0,
        max_error_share=1.0,
        max_latency_p99_ms=10_000.0,
    )
    guard = CanaryGuard(rollout(hold_s=0), loose)
    kwargs = {
        "flags": {"champion": 0.1, "challenger": 0.9},
        "ks": {"champion": 0.01, "challenger": 0.3},
        "errors": {"fallback": True},
        "latency": {"latency_ms": 4000.0},
    }[breach]
    feed(guard, 100, 100, **kwargs)
    assert guard.verdict(T0).action == "advance"  # type: ignore[union-attr]


def test_scores_of_other_rollouts_and_unreadable_ones_are_not_observed() -> None:
    score = {
        "transaction_id": "t1",
        "score": 0.7,
        "decision": "review",
        "latency_ms": 3.0,
        "canary": {
            "rollout": "v2-canary1",
            "step": 1,
            "share": 25.0,
            "arm": "challenger",
            "other": {"model_version": "v1", "score": 0.1, "decision": "approve"},
            "fallback": False,
        },
    }
    found = Observation.from_json(orjson.dumps(score), "v2-canary1")
    assert found is not None and found.opinions() == (0.1, False, 0.7, True)
    assert Observation.from_json(orjson.dumps(score), "v2-canary2") is None
    assert Observation.from_json(b"{not json", "v2-canary1") is None
    assert Observation.from_json(orjson.dumps({**score, "canary": None}), "v2-canary1") is None

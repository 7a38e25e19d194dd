"""Canary assignment and scoring: the same arm for a user everywhere, both opinions in every
score, offline scoring that reproduces the stream's arm and decision."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from models.canary import Assigner, Canary, bucket, in_challenger
from models.fraud_labels import attributed_frauds
from models.scoring import Scorer, score_offline, score_rows
from models.thresholds import Thresholds
from schemas.events import FraudScore, Label, Transaction
from schemas.jsonl import read_events
from tests.conftest import TrainedRegistry
from tests.unit.test_pipeline import (
    DATA,
    SOURCES,
    Cluster,
    Source,
    Topics,
    records,
    run_schedule,
    uneven_schedule,
)
from tests.unit.test_registry import tiny_model

USERS = [f"u{i}" for i in range(20_000)]
ROLLOUT = "v2-canary1"
ROOT = str(Path(__file__).resolve().parents[2])


def challenger_scorer(seed: int = 7, version: str = "v2") -> Scorer:
    booster = xgb.Booster()
    booster.load_model(bytearray(tiny_model(seed)))
    return Scorer(booster, version, Thresholds(review=0.2, decline=0.8))


def test_a_users_bucket_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from models.canary import bucket; "
        f"print([bucket({ROLLOUT!r}, u) for u in ('u1', 'u2', 'user-éß')])"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": ROOT}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(run.stdout.strip())
    here = str([bucket(ROLLOUT, u) for u in ("u1", "u2", "user-éß")])
    assert outputs == {here}


def test_the_share_of_users_in_the_challenger_arm_is_the_asked_share() -> None:
    for share in (5.0, 25.0, 50.0):
        mask = Assigner(ROLLOUT, share).challenger_mask(USERS)
        assert abs(mask.mean() - share / 100) < 0.01, (share, mask.mean())
    assert not Assigner(ROLLOUT, 0.0).challenger_mask(USERS).any()
    assert Assigner(ROLLOUT, 100.0).challenger_mask(USERS).all()


def test_raising_the_share_only_moves_users_to_the_challenger() -> None:
    previous = np.zeros(len(USERS), dtype=bool)
    for share in (5.0, 25.0, 100.0):
        now = Assigner(ROLLOUT, share).challenger_mask(USERS)
        assert (now | ~previous).all(), "a challenger user went back to the champion"
        previous = now


def test_another_rollout_draws_another_sample_of_users() -> None:
    one = Assigner("v2-canary1", 25.0).challenger_mask(USERS)
    two = Assigner("v2-canary2", 25.0).challenger_mask(USERS)
    overlap = (one & two).mean()
    assert 0.04 < overlap < 0.09  # independent draws: ~ 0.25 * 0.25


def test_the_cached_assigner_agrees_with_the_hash() -> None:
    assigner = Assigner(ROLLOUT, 30.0)
    first = assigner.challenger_mask(USERS[:500] + USERS[:500])
    assert first.tolist() == [in_challenger(ROLLOUT, 30.0, u) for u in USERS[:500] * 2]


def _transactions(n: int) -> list[Transaction]:
    return [
        Transaction(
            transaction_id=f"t{i}",
            user_id=f"u{i % 97}",
            merchant_id="m1",
            amount=10.0 + i,
            timestamp="2024-03-01T12:00:00Z",  # type: ignore[arg-type]
        )
        for i in range(n)
    ]


def test_each_arm_is_decided_by_its_model_and_carries_the_others_opinion(
    trained_registry: TrainedRegistry,
) -> None:
    champion = Scorer.from_loaded(trained_registry.store().load())
    challenger = challenger_scorer()
    txs = _transactions(300)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(300, len(champion.feature_names))).tolist()
    canary = Canary(ROLLOUT, 1, 40.0, challenger)
    results = score_rows(champion, txs, rows, [False] * 300, canary=canary)
    alone = {s.version: score_rows(s, txs, rows, [False] * 300) for s in (champion, challenger)}
    arms = Counter()
    for i, (tx, result) in enumerate(zip(txs, results, strict=True)):
        event = result.event()  # type: ignore[union-attr]
        assert event.canary is not None and event.canary.other is not None
        in_arm = in_challenger(ROLLOUT, 40.0, tx.user_id)
        decider, other = (challenger, champion) if in_arm else (champion, challenger)
        arms[event.canary.arm] += 1
        assert event.canary.arm == ("challenger" if in_arm else "champion")
        assert (event.canary.rollout, event.canary.step, event.canary.share) == (ROLLOUT, 1, 40.0)
        assert event.model_version == decider.version
        expected = alone[decider.version][i].event()  # type: ignore[union-attr]
        assert (event.score, event.decision, event.reasons) == (
            expected.score,
            expected.decision,
            expected.reasons,
        )
        second = alone[other.version][i].event()  # type: ignore[union-attr]
        assert event.canary.other.model_version == other.version
        assert event.canary.other.score == second.score
        assert event.canary.other.decision == second.decision
    assert arms["champion"] > 0 and arms["challenger"] > 0


class _Broken(Scorer):
    def score(self, matrix: np.ndarray, stages: object = None) -> object:  # type: ignore[override]
        raise xgb.core.XGBoostError("challenger model call failed")


def test_a_failing_challenger_leaves_its_arm_to_the_champion_marked_as_fallback(
    trained_registry: TrainedRegistry,
) -> None:
    champion = Scorer.from_loaded(trained_registry.store().load())
    good = challenger_scorer()
    broken = _Broken(good.booster, "v2", good.thresholds)
    txs = _transactions(100)
    rows = np.random.default_rng(2).normal(size=(100, len(champion.feature_names))).tolist()
    results = score_rows(champion, txs, rows, [False] * 100, canary=Canary(ROLLOUT, 0, 50, broken))
    events = [r.event() for r in results]  # type: ignore[union-attr]
    assert len(events) == 100, "a transaction was lost"
    fallback = [e for e in events if e.canary is not None and e.canary.arm == "challenger"]
    assert fallback and all(e.canary.fallback for e in fallback)  # type: ignore[union-attr]
    assert all(e.model_version == champion.version for e in events)
    assert all(e.canary.other is None for e in fallback)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def offline_canary(trained_registry: TrainedRegistry) -> dict[str, FraudScore]:
    scorer = Scorer.from_loaded(trained_registry.store().load())
    txs = read_events(DATA / "traffic.jsonl", Transaction).records
    frauds = attributed_frauds(read_events(DATA / "traffic_labels.jsonl", Label).records).frauds
    canary = Canary(ROLLOUT, 0, 30.0, challenger_scorer())
    return {s.transaction_id: s for s in score_offline(txs, scorer, frauds, canary=canary)}


def test_two_workers_and_a_restart_decide_each_transaction_as_offline_scoring_does(
    trained_registry: TrainedRegistry, offline_canary: dict[str, FraudScore]
) -> None:
    """Each worker (and the restarted one) has its own assigner: nothing is shared but the
    rollout id, and every score's arm, version and decision equal the offline run's."""
    cluster = Cluster(Scorer.from_loaded(trained_registry.store().load()))
    cluster.positions, cluster.acked = {}, {}
    cluster.make_canary = lambda: Canary(ROLLOUT, 0, 30.0, challenger_scorer())
    topics = Topics.load()
    cluster.start(0, [s for s in SOURCES if s.partition % 2 == 0])
    cluster.start(1, [s for s in SOURCES if s.partition % 2 == 1])
    schedule = uneven_schedule(topics, 3_600_000, Source("tx", 1))
    half = len(schedule) // 2
    run_schedule(cluster, schedule[:half], lambda source: source.partition % 2)
    cluster.commit()
    cluster.pipelines.clear()  # both die; one restarts and takes every partition
    cluster.positions = {}
    cluster.start(0, SOURCES)
    offsets = dict(cluster.positions)
    rest = Topics({s: topics.partitions[s][offsets[s] :] for s in SOURCES})
    for source, chunk in uneven_schedule(rest, 3_600_000, Source("tx", 1)):
        cluster.feed(0, source, records(chunk, offsets[source]))
        offsets[source] += len(chunk)
        cluster.sync(0)
    cluster.idle_all()
    scores = cluster.sink.scores()
    assert {s.transaction_id for s in scores} == set(offline_canary)
    arms = Counter()
    for score in scores:
        expected = offline_canary[score.transaction_id]
        assert score.canary is not None and expected.canary is not None
        assert score.canary.arm == expected.canary.arm, score.transaction_id
        assert score.model_version == expected.model_version
        assert (score.score, score.decision) == (expected.score, expected.decision)
        assert score.canary.other == expected.canary.other
        arms[score.canary.arm] += 1
    assert arms["challenger"] > 0.2 * len(scores) and arms["champion"] > 0.6 * len(scores)

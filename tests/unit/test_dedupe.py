"""One score per transaction id: a duplicate id is neither counted again nor scored again, in the
stream (`score_batch`, a dead letter) and offline (`score_offline`, skipped and counted) alike."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from models.merchant_window import EMPTY
from models.scoring import OfflineReport, Scorer, score_offline
from models.seen_ids import SeenIds
from schemas.events import FraudScore, Transaction
from stream_app.batch import Decoded, Incoming, ScoredBatchResult, decode, score_batch
from stream_app.user_record import UserRecord
from tests.conftest import TrainedRegistry

HORIZON_MS = 3_600_000


def tx(transaction_id: str, minute: int, amount: float = 10.0) -> dict[str, object]:
    hour, minute = divmod(minute, 60)
    return {
        "transaction_id": transaction_id,
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": amount,
        "timestamp": f"2024-03-01T{10 + hour:02d}:{minute:02d}:00Z",
    }


def decoded(data: dict[str, object], offset: int) -> Decoded:
    result = decode(Incoming("tx", 0, offset, b"u1", json.dumps(data).encode(), 0.0), 4096)
    assert isinstance(result, Decoded)
    return result


@pytest.fixture(scope="module")
def scorer(trained_registry: TrainedRegistry) -> Scorer:
    return Scorer.from_loaded(trained_registry.store().load())


class Stream:
    """score_batch over one user's record, restored from its JSON between batches (as the table
    would after a restart)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.record = UserRecord()

    def run(self, *items: Decoded) -> ScoredBatchResult:
        self.record = UserRecord.from_json(json.loads(json.dumps(self.record.to_json())))
        record = self.record
        return score_batch(
            list(items),
            lambda user: record,
            lambda b, m: EMPTY,
            self.scorer,
            600_000,
            lambda: 0.0,
            dedupe_horizon_ms=HORIZON_MS,
        )


def test_a_duplicate_id_is_a_dead_letter_and_not_counted(scorer: Scorer) -> None:
    stream = Stream(scorer)
    first = stream.run(decoded(tx("a", 0), 0), decoded(tx("b", 1), 1))
    again = stream.run(decoded(tx("a", 2, amount=99.0), 2), decoded(tx("c", 3), 3))
    assert [s.transaction_id for s in first.scores + again.scores] == ["a", "b", "c"]
    assert [(r.reason, r.offset) for r in again.rejected] == [("duplicate", 2)]
    assert "offset 0" in again.rejected[0].error
    # c sees a and b before it, not the duplicate: three in the hour, 30.0 in all.
    c = again.scores[0].event()
    assert c.features["user_tx_count_1h"] == 3
    assert c.features["user_amount_sum_1h"] == 30.0


def test_a_redelivered_record_is_answered_from_the_journal_not_rejected(scorer: Scorer) -> None:
    stream = Stream(scorer)
    first = stream.run(decoded(tx("a", 0), 0))
    again = stream.run(decoded(tx("a", 0), 0))  # the same offset: a redelivery after a crash
    assert again.rejected == [] and again.replayed == 1
    assert again.scores[0].event().features == first.scores[0].event().features


def test_an_id_seen_before_the_horizon_is_scored_again(scorer: Scorer) -> None:
    stream = Stream(scorer)
    stream.run(decoded(tx("a", 0), 0), decoded(tx("b", 30), 1))
    late_enough = stream.run(decoded(tx("x", 70), 2), decoded(tx("a", 75), 3))
    assert [s.transaction_id for s in late_enough.scores] == ["x", "a"]
    assert late_enough.rejected == []


def test_offline_scoring_applies_the_same_rule(scorer: Scorer) -> None:
    events = [tx("a", 0), tx("b", 1), tx("a", 2, amount=99.0), tx("c", 3), tx("b", 4)]
    stream = Stream(scorer)
    online: list[FraudScore] = []
    for offset, data in enumerate(events):
        online += [s.event() for s in stream.run(decoded(data, offset)).scores]
    report = OfflineReport()
    offline = list(
        score_offline(
            [Transaction.model_validate(e, strict=False) for e in events],
            scorer,
            report=report,
            dedupe_horizon_ms=HORIZON_MS,
        )
    )
    assert report.duplicates == 2
    assert [s.transaction_id for s in offline] == ["a", "b", "c"]
    assert [s.features for s in offline] == [s.features for s in online]
    assert [s.score for s in offline] == [s.score for s in online]


def test_seen_ids_forget_what_is_older_than_the_horizon() -> None:
    seen = SeenIds()
    for i in range(20):
        seen.add(f"t{i}", ts_ms=i * 60_000, offset=i, newest_ms=i * 60_000, horizon_ms=300_000)
    assert seen.first_offset("t0") is None
    assert seen.first_offset("t19") == 19
    assert len(seen) <= 7
    restored = SeenIds.from_json(json.loads(json.dumps(seen.to_json())))
    assert restored.to_json() == seen.to_json()


def test_seen_ids_encoded_is_their_json_through_adds_repeats_and_forgetting() -> None:
    """The kept JSON of the ids (grown per add once encoded) always equals `to_json()`."""
    rng = random.Random(7)
    seen = SeenIds()
    newest = 0
    for step in range(3_000):
        newest += rng.choice([0, 1_000, 60_000, 900_000])
        known = list(seen._ids)
        tid = rng.choice(known) if known and rng.random() < 0.05 else f"t{step}"
        ts = newest - rng.choice([0, 0, 0, 120_000, 4_000_000])
        seen.add(tid, ts_ms=ts, offset=step, newest_ms=newest, horizon_ms=3_600_000)
        if rng.random() < 0.3:
            assert orjson.loads(bytes(orjson.dumps(seen.encoded()))) == seen.to_json(), step
    assert 1 < len(seen) < 3_000

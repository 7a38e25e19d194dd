"""The stream's pure pieces: decoding to dead letters, idempotent user records."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.merchant_window import EMPTY
from models.registry import ModelRegistry
from models.scoring import Scorer
from stream_app import dead_letters
from stream_app.batch import Incoming, decode, decode_batch, score_batch
from stream_app.dead_letters import Rejected
from stream_app.user_record import UserRecord
from tests.conftest import TrainedRegistry

TX = {
    "transaction_id": "t1",
    "user_id": "u1",
    "merchant_id": "m1",
    "amount": 12.5,
    "timestamp": "2024-03-01T10:00:00Z",
}


def message(value: bytes | None, offset: int = 0, key: bytes | None = b"u1") -> Incoming:
    return Incoming("transactions", 2, offset, key, value, 0.0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "not_utf8"),
        (json.dumps({**TX, "amount": -1}).encode(), "invalid_event"),
        (json.dumps({k: v for k, v in TX.items() if k != "user_id"}).encode(), "invalid_event"),
        (json.dumps({**TX, "card_number": "4111"}).encode(), "invalid_event"),
        (b"{" + b" " * 2000 + b"}", "oversized"),
        (None, "invalid_json"),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_its_origin(value: bytes | None, reason: str) -> None:
    rejected = decode(message(value, offset=41), max_bytes=1024)
    assert isinstance(rejected, Rejected)
    letter = dead_letters.build(rejected, 1_000_000).letter
    assert letter.reason == reason
    assert letter.offset == 41 and letter.partition == 2
    assert base64.b64decode(letter.original_value) == (value or b"")
    assert letter.original_key == base64.b64encode(b"u1").decode()
    assert not letter.truncated


def test_far_future_event_times_are_refused() -> None:
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    letter = decode(message(json.dumps({**TX, "timestamp": ahead}).encode()), 4096, 86_400_000)
    assert letter.reason == "invalid_event"  # type: ignore[union-attr]
    assert "ahead of the worker's clock" in letter.error  # type: ignore[union-attr]
    fine = decode(message(json.dumps({**TX, "timestamp": soon}).encode()), 4096, 86_400_000)
    assert hasattr(fine, "tx")
    assert hasattr(decode(message(json.dumps({**TX, "timestamp": ahead}).encode()), 4096), "tx")


def test_decode_batch_splits_valid_and_dead() -> None:
    good = json.dumps(TX).encode()
    valid, dead = decode_batch([message(good, 0), message(b"x", 1), message(good, 2)], 4096)
    assert [v.message.offset for v in valid] == [0, 2]
    assert [d.offset for d in dead] == [1]


def test_redelivered_transactions_get_the_identical_row_and_are_not_counted_twice(
    trained_registry: TrainedRegistry,
) -> None:
    scorer = Scorer.from_loaded(
        ModelRegistry(trained_registry.root, trained_registry.model_name).load()
    )
    lines = [
        json.dumps({**TX, "transaction_id": f"t{i}", "timestamp": f"2024-03-01T10:0{i}:00Z"})
        for i in range(4)
    ]
    valid, _ = decode_batch([message(line.encode(), i) for i, line in enumerate(lines)], 4096)
    records: dict[str, UserRecord] = {}

    def record_of(user: str) -> UserRecord:
        return records.setdefault(user, UserRecord())

    def run(items: list) -> list:  # type: ignore[type-arg]
        result = score_batch(items, record_of, lambda b, m: EMPTY, scorer, 600_000, lambda: 0.0)
        return [s.event() for s in result.scores]

    first = run(valid)
    # The restored state (from the changelog) holds all four; offsets 2 and 3 come again.
    stored = records["u1"].encode()  # as the worker writes it to the table
    assert stored == orjson.dumps(records["u1"].to_json())  # journal entries encoded once
    restored = UserRecord.from_json(orjson.loads(stored))
    assert restored.encode() == stored
    records["u1"] = restored
    again = run(valid[2:])
    assert [s.features for s in again] == [s.features for s in first[2:]]
    assert [s.score for s in again] == [s.score for s in first[2:]]
    assert first[3].features["user_tx_count_1h"] == 4
    # Not applied twice: the next transaction sees four before it, not six.
    after = records["u1"].windows.observe(1_709_287_500_000, 100, "m1")
    assert after.counts[0] == 5


def test_journal_is_pruned_to_what_is_not_committed() -> None:
    record = UserRecord()
    for offset in range(5):
        record.remember(offset, [float(offset)], False)
    record.prune(3)
    assert [e.offset for e in record.journal] == [3, 4]
    assert record.replayed(4) is not None and record.replayed(2) is None
    assert record.replayed(7) is None  # never applied

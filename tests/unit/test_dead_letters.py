"""Any single record is survivable: every input becomes a score or a deliverable dead letter.

The fuzz tests feed the decode → dead letter → score path arbitrary bytes up to and beyond the
broker's default message limit (1 MB), with keys from absent to huge, and check the two outcomes
the worker relies on: a valid transaction is scored into a publishable FraudScore, anything else
becomes a dead letter whose record fits the DLQ's byte budget, validates against the schema, and
identifies the original exactly (size and sha256, and its bytes or a prefix of them).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.merchant_window import EMPTY
from models.scoring import ScoredBatch, Scorer
from models.stages import NO_STAGES, StageClock
from schemas.events import DeadLetter, DeadLetterReason
from stream_app import dead_letters
from stream_app.batch import Decoded, Incoming, decode, score_batch
from stream_app.dead_letters import RECORD_OVERHEAD_BYTES, Rejected
from stream_app.user_record import UserRecord
from tests.conftest import TrainedRegistry

BROKER_LIMIT = 1_048_588
"""Kafka's default max.message.bytes."""
INPUT_LIMIT = 64 * 1024


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Small random bytes, or big ones (a random head and tail around a filler): up to ~1.1 MB
    without asking hypothesis to generate a megabyte byte by byte."""
    head = draw(st.binary(max_size=512))
    if draw(st.booleans()):
        return head
    filler = draw(st.sampled_from([b"x", b"\x00", b"\xff", b'{"a":', b"\xe2\x82\xac"]))
    size = draw(
        st.integers(min_value=0, max_value=100_000)
        | st.integers(min_value=BROKER_LIMIT - 200_000, max_value=BROKER_LIMIT + 50_000)
    )
    tail = draw(st.binary(max_size=64))
    return head + filler * (size // len(filler)) + tail


keys = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.integers(min_value=1_000, max_value=300_000).map(lambda n: b"\xfe" * n),
)
limits = st.integers(min_value=dead_letters.MIN_LIMIT_BYTES, max_value=BROKER_LIMIT)


def incoming(value: bytes | None, key: bytes | None, offset: int = 7) -> Incoming:
    return Incoming("transactions", 3, offset, key, value, 0.0)


def assert_deliverable(
    record: dead_letters.DeadLetterRecord, rejected: Rejected, limit: int
) -> None:
    value, key = rejected.value or b"", rejected.key
    assert len(record.value) + len(record.key or b"") + RECORD_OVERHEAD_BYTES <= limit
    letter = DeadLetter.model_validate_json(record.value)
    assert letter == record.letter
    assert letter.reason in get_args(DeadLetterReason)
    assert (letter.topic, letter.partition, letter.offset) == ("transactions", 3, 7)
    assert letter.original_size == len(value)
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    kept = base64.b64decode(letter.original_value)
    assert value.startswith(kept)
    assert letter.truncated == (kept != value)
    if key is None:
        assert letter.original_key is None and record.key is None
    else:
        kept_key = base64.b64decode(letter.original_key or "")
        assert key.startswith(kept_key) and letter.original_key_size == len(key)
        assert letter.key_truncated == (kept_key != key)
        if letter.key_truncated:
            assert letter.original_key_sha256 == hashlib.sha256(key).hexdigest()
            assert record.key == hashlib.sha256(key).hexdigest().encode()
        else:
            assert record.key == key


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(value=st.one_of(st.none(), payloads()), key=keys, limit=limits)
def test_arbitrary_bytes_become_a_deliverable_dead_letter(
    value: bytes | None, key: bytes | None, limit: int
) -> None:
    result = decode(incoming(value, key), INPUT_LIMIT, 86_400_000)
    assert isinstance(result, Rejected), "random bytes are not a transaction"
    record = dead_letters.build(result, limit)
    assert_deliverable(record, result, limit)
    smallest = dead_letters.smallest(record)
    assert len(smallest.value) + len(smallest.key or b"") < 8 * 1024
    assert DeadLetter.model_validate_json(smallest.value).original_sha256 == (
        record.letter.original_sha256
    )


TX = {
    "transaction_id": "t1",
    "user_id": "u1",
    "merchant_id": "m1",
    "amount": 12.5,
    "timestamp": "2024-03-01T10:00:00Z",
}
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def mutated_transactions(draw: st.DrawFn) -> bytes:
    """A valid transaction with some fields replaced, dropped or added, and padding: many decode,
    many do not, some are oversized."""
    data: dict[str, Any] = dict(TX)
    data["transaction_id"] = draw(st.from_regex(r"\At[0-9]{1,6}\Z"))
    data["amount"] = draw(st.floats(min_value=0.01, max_value=1e9, allow_nan=False))
    for name in draw(st.lists(st.sampled_from([*TX, "channel", "country", "extra"]), max_size=3)):
        if draw(st.booleans()):
            data[name] = draw(json_values)
        else:
            data.pop(name, None)
    text = json.dumps(data, allow_nan=True)
    padding = draw(st.sampled_from([0, 0, 0, 100, INPUT_LIMIT]))
    return (text + " " * padding).encode()


@pytest.fixture(scope="module")
def scorer(trained_registry: TrainedRegistry) -> Scorer:
    return Scorer.from_loaded(trained_registry.store().load())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated_transactions(), key=keys)
def test_every_input_becomes_a_score_or_a_deliverable_dead_letter(
    scorer: Scorer, value: bytes, key: bytes | None
) -> None:
    result = decode(incoming(value, key), INPUT_LIMIT, 86_400_000)
    if isinstance(result, Rejected):
        assert_deliverable(dead_letters.build(result, BROKER_LIMIT), result, BROKER_LIMIT)
        return
    assert isinstance(result, Decoded)
    batch = score_batch(
        [result], lambda user: UserRecord(), lambda b, m: EMPTY, scorer, 600_000, lambda: 0.0
    )
    assert len(batch.scores) + len(batch.rejected) == 1
    for score in batch.scores:
        assert score.event().transaction_id == score.transaction_id  # valid FraudScore JSON
    for rejected in batch.rejected:
        assert_deliverable(dead_letters.build(rejected, BROKER_LIMIT), rejected, BROKER_LIMIT)


def test_a_message_of_09_mb_keeps_a_prefix_its_size_and_hash() -> None:
    value = b'{"transaction_id":' + b"9" * 900_000 + b"}"
    rejected = decode(incoming(value, b"u1"), INPUT_LIMIT)
    assert isinstance(rejected, Rejected) and rejected.reason == "oversized"
    record = dead_letters.build(rejected, 1_000_000)
    assert record.letter.truncated
    assert 0 < len(base64.b64decode(record.letter.original_value)) < len(value)
    assert_deliverable(record, rejected, 1_000_000)


def test_a_small_message_is_kept_whole() -> None:
    rejected = decode(incoming(b"{not json", b"u1"), INPUT_LIMIT)
    assert isinstance(rejected, Rejected)
    letter = dead_letters.build(rejected, 1_000_000).letter
    assert not letter.truncated and base64.b64decode(letter.original_value) == b"{not json"


def test_too_small_a_limit_is_refused() -> None:
    rejected = Rejected("t", 0, 0, None, b"x", "invalid_json", "x")
    with pytest.raises(ValueError, match="too small"):
        dead_letters.build(rejected, 1000)


class _NaNScorer(Scorer):
    """Gives the second row of each batch a NaN score (a model gone wrong)."""

    def score(self, matrix: Any, stages: StageClock = NO_STAGES) -> ScoredBatch:
        batch = super().score(matrix, stages)
        scores = list(batch.scores)
        if len(scores) > 1:
            scores[1] = float("nan")
        return ScoredBatch(scores, batch.decisions, batch.reasons, batch.contributions_finite)


def test_an_unpublishable_score_is_a_dead_letter_not_a_crash(scorer: Scorer) -> None:
    broken = _NaNScorer(scorer.booster, scorer.version, scorer.thresholds)
    items = []
    for i in range(3):
        raw = json.dumps({**TX, "transaction_id": f"t{i}", "timestamp": f"2024-03-01T10:0{i}:00Z"})
        decoded = decode(incoming(raw.encode(), b"u1", offset=i), INPUT_LIMIT)
        assert isinstance(decoded, Decoded)
        items.append(decoded)
    record = UserRecord()
    batch = score_batch(items, lambda user: record, lambda b, m: EMPTY, broken, 600_000, float)
    assert [s.transaction_id for s in batch.scores] == ["t0", "t2"]
    assert [(r.reason, r.offset) for r in batch.rejected] == [("unscorable", 1)]
    assert "score not publishable" in batch.rejected[0].error

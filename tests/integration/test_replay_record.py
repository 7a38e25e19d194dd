"""Replay and record through a real broker: keys, timestamps, pacing, delivery, bad lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fraudstream.testing import Broker, collect
from producers.record import record
from producers.replay import Pacer, read_recording, replay
from schemas.errors import InputError
from schemas.events import epoch_ms
from tests.conftest import SimulatedData

pytestmark = pytest.mark.integration


def consume_all(broker: Broker, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    config = broker.client_config()
    messages = collect(config, topic, lambda m: len(m) >= expected, timeout_s, f"{expected}")
    assert len(messages) == expected, f"got {len(messages)} messages, expected {expected}"
    return messages


def head(source: Path, target: Path, count: int) -> list[bytes]:
    lines = source.read_bytes().splitlines()[:count]
    target.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def test_replay_keys_by_user_and_stamps_event_time(
    fraudstream_broker: Broker,
    fraudstream_topics: Callable[..., dict[str, str]],
    small_dataset: SimulatedData,
    tmp_path: Path,
) -> None:
    broker = fraudstream_broker
    topic = fraudstream_topics("transactions")["transactions"]
    lines = head(small_dataset.transactions_file, tmp_path / "tx.jsonl", 3000)
    stats = replay(
        read_recording(tmp_path / "tx.jsonl", send_invalid=False),
        topic,
        broker.client_config(),
        Pacer(speed=0),
    )
    assert (stats.sent, stats.delivered, stats.failed) == (3000, 3000, 0)
    documents = {line: json.loads(line) for line in lines}
    messages = consume_all(broker, topic, 3000)
    partition_of: dict[bytes, int] = {}
    order: dict[bytes, list[bytes]] = {}
    for message in messages:
        document = documents[message.value()]  # sent byte for byte
        assert message.key().decode() == document["user_id"]
        assert message.timestamp()[1] == epoch_ms(datetime.fromisoformat(document["timestamp"]))
        # One user's transactions stay in one partition, in file order.
        assert partition_of.setdefault(message.key(), message.partition()) == message.partition()
        order.setdefault(message.key(), []).append(message.value())
    for user_lines in order.values():
        assert user_lines == [line for line in lines if line in set(user_lines)]


def test_labels_are_keyed_by_transaction_and_stamped_with_labeled_at(
    fraudstream_broker: Broker,
    fraudstream_topics: Callable[..., dict[str, str]],
    small_dataset: SimulatedData,
    tmp_path: Path,
) -> None:
    broker = fraudstream_broker
    topic = fraudstream_topics("labels")["labels"]
    lines = head(small_dataset.labels_file, tmp_path / "labels.jsonl", 500)
    replay(read_recording(tmp_path / "labels.jsonl", False), topic, broker.client_config(), Pacer())
    for message in consume_all(broker, topic, len(lines)):
        document = json.loads(message.value())
        assert message.key().decode() == document["transaction_id"]
        assert message.timestamp()[1] == epoch_ms(datetime.fromisoformat(document["labeled_at"]))


def test_record_writes_every_message_and_stops_at_max(
    fraudstream_broker: Broker,
    fraudstream_topics: Callable[..., dict[str, str]],
    small_dataset: SimulatedData,
    tmp_path: Path,
) -> None:
    broker = fraudstream_broker
    topic = fraudstream_topics("transactions")["transactions"]
    lines = head(small_dataset.transactions_file, tmp_path / "tx.jsonl", 2000)
    replay(read_recording(tmp_path / "tx.jsonl", False), topic, broker.client_config(), Pacer())

    everything = record(topic, tmp_path / "all.jsonl", broker.client_config(), timeout_s=2.0)
    assert everything.written == 2000
    assert sorted((tmp_path / "all.jsonl").read_bytes().splitlines()) == sorted(lines)

    some = record(topic, tmp_path / "some.jsonl", broker.client_config(), max_messages=150)
    assert some.written == 150
    assert len((tmp_path / "some.jsonl").read_bytes().splitlines()) == 150


def test_bad_lines_are_refused_unless_sent_on_purpose(
    fraudstream_broker: Broker, fraudstream_topics: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    recording = tmp_path / "mixed.jsonl"
    good = (
        b'{"transaction_id":"t1","user_id":"u1","merchant_id":"m1","amount":5.0,'
        b'"timestamp":"2024-01-01T00:00:00Z"}'
    )
    recording.write_bytes(good + b"\n{broken json\n" + good.replace(b"t1", b"t2") + b"\n")
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: not JSON"):
        list(read_recording(recording, send_invalid=False))

    broker = fraudstream_broker
    topic = fraudstream_topics("transactions")["transactions"]
    stats = replay(read_recording(recording, True), topic, broker.client_config(), Pacer())
    assert (stats.sent, stats.invalid_sent, stats.failed) == (3, 1, 0)
    values = {m.value() for m in consume_all(broker, topic, 3)}
    assert b"{broken json" in values

    recorded = record(topic, tmp_path / "back.jsonl", broker.client_config(), timeout_s=2.0)
    assert (recorded.written, recorded.not_json) == (2, 1)


def test_record_of_a_missing_topic_is_a_clear_error(
    fraudstream_broker: Broker, tmp_path: Path
) -> None:
    broker = fraudstream_broker
    with pytest.raises(InputError, match="does not exist"):
        record("no-such-topic-here", tmp_path / "x.jsonl", broker.client_config(), timeout_s=1)
    assert not (tmp_path / "x.jsonl").exists()
    assert list(tmp_path.iterdir()) == []


def test_pacer_follows_event_time_and_rate() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = Pacer(speed=60, clock=lambda: clock[0], sleep=sleep)
    for minute in range(4):
        pacer.wait(minute * 60_000)  # one event-time minute apart -> one second apart
    assert slept == pytest.approx([1.0, 1.0, 1.0])

    clock[0], slept[:] = 0.0, []
    rated = Pacer(rate=4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        rated.wait(None)
    assert sum(slept) == pytest.approx(1.0)

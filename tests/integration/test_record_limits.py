"""One message must never stop a partition: records at the broker's size limits, duplicate
transaction ids, a header flood and a key that is not UTF-8 between valid transactions, on a
real broker.

Every partition gets a 0.9 MB message, one of 1 MB - 1 byte and one at exactly the input topic's
`max.message.bytes`, each followed by valid transactions. Before dead letters were fitted to the
DLQ's limit, the 0.9 MB message alone crash-looped its partition (the dead letter carried the
bytes base64-encoded, 1.2 MB, which the producer refused) and nothing behind it was scored.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from confluent_kafka import Producer

from fraudstream.testing import Stack
from fraudstream.topics import create_topics
from tests.integration.test_worker import DATA

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TOPIC_LIMIT = 1_048_588
"""Kafka's default max.message.bytes, set explicitly on the test's input topic."""
SIZES = (900_000, 1_048_575, TOPIC_LIMIT)
BIG_AFTER = (150, 500, 850)
"""After which valid transactions (by index) the records of each size are sent."""
PARTITIONS = 4


def big(size: int, partition: int) -> bytes:
    head = json.dumps({"transaction_id": f"big-{partition}-{size}", "pad": ""}).encode()[:-2]
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_records_at_the_size_limits_and_duplicates_do_not_stop_a_partition(
    fraudstream_stack: Stack,
) -> None:
    stack = fraudstream_stack
    # The input topic says how large a record may be (the embedded broker does not enforce it).
    stack.topics["transactions"] += "-limited"
    create_topics(
        stack.broker.client_config(),
        [stack.topics["transactions"]],
        PARTITIONS,
        config={stack.topics["transactions"]: {"max.message.bytes": str(TOPIC_LIMIT)}},
    )
    valid = (DATA / "traffic.jsonl").read_bytes().splitlines()[:1200]
    duplicates = valid[-10:]  # sent again right after, under new offsets
    worker = stack.start_worker()
    producer = Producer(
        {**stack.broker.client_config(), "linger.ms": 20, "message.max.bytes": 2 * TOPIC_LIMIT}
    )
    for i, line in enumerate(valid):
        key = json.loads(line)["user_id"].encode()
        if i == 200:  # a header flood on a valid transaction
            producer.produce(
                stack.topics["transactions"],
                value=line,
                key=key,
                headers=[(f"h{n}", b"\xff" * 8) for n in range(5000)],
            )
        elif i == 201:  # a key that is not UTF-8 (the worker keys scores by user_id)
            producer.produce(stack.topics["transactions"], value=line, key=b"\xff\xfe")
        else:
            producer.produce(stack.topics["transactions"], value=line, key=key)
        if i in BIG_AFTER:  # between valid transactions, on every partition
            size = SIZES[BIG_AFTER.index(i)]
            for partition in range(PARTITIONS):
                producer.produce(
                    stack.topics["transactions"],
                    value=big(size, partition),
                    key=b"k" * 50_000 if partition == 0 else b"big",
                    partition=partition,
                )
        producer.poll(0)
    for line in duplicates:
        producer.produce(
            stack.topics["transactions"], value=line, key=json.loads(line)["user_id"].encode()
        )
    assert producer.flush(60) == 0
    ids = {json.loads(line)["transaction_id"] for line in valid}
    scores = stack.scores(ids, timeout=240)
    expected_letters = len(SIZES) * PARTITIONS + len(duplicates)
    parsed = stack.dead_letters(expected_letters, timeout=120)
    assert worker.running, "the worker died on input"
    worker.stop()  # exit code 0 asserted
    assert set(scores) == ids
    assert scores.duplicates() == {}, "a duplicate transaction id was scored twice"
    assert len(parsed) == expected_letters
    oversized = [d for d in parsed if d.reason == "oversized"]
    assert sorted(d.original_size or 0 for d in oversized) == sorted(SIZES * PARTITIONS)
    for letter in oversized:
        assert letter.truncated
        partition = letter.partition
        original = big(letter.original_size or 0, partition)
        assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
        assert original.startswith(base64.b64decode(letter.original_value))
        assert letter.key_truncated == (partition == 0)
    dupes = sorted(d.offset for d in parsed if d.reason == "duplicate")
    assert len(dupes) == len(duplicates)
    assert all("already applied" in d.error for d in parsed if d.reason == "duplicate")
    assert "Traceback" not in worker.logs()

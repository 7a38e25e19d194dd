"""Poison input: 10,000 malformed messages interleaved with valid ones. Every valid transaction
is scored once, every malformed message lands in the DLQ with its reason and its exact bytes,
and the worker stays up throughout."""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from fraudstream.testing import Stack
from tests.integration.test_worker import DATA

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BASE = {
    "transaction_id": "p-0",
    "user_id": "u-poison",
    "merchant_id": "m-1",
    "amount": 12.5,
    "currency": "EUR",
    "timestamp": "2024-01-01T00:00:00Z",
}


def _json(**changes: object) -> bytes:
    return json.dumps({**BASE, **changes}).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in BASE.items() if k != field}).encode()


# (kind, generator, reasons a message of this kind may get)
KINDS: list[tuple[str, Callable[[random.Random], bytes], set[str]]] = [
    (
        "random bytes",
        lambda r: r.randbytes(r.randint(1, 300)),
        {"not_utf8", "invalid_json", "invalid_event"},
    ),
    ("broken json", lambda r: _json()[: r.randint(1, 40)], {"invalid_json"}),
    ("amount as text", lambda r: _json(amount=str(r.random())), {"invalid_event"}),
    ("user id as number", lambda r: _json(user_id=r.randint(0, 10**9)), {"invalid_event"}),
    ("epoch timestamp", lambda r: _json(timestamp=r.randint(0, 2**40)), {"invalid_event"}),
    ("NaN amount", lambda r: _json().replace(b"12.5", b"NaN"), {"invalid_json", "invalid_event"}),
    (
        "infinite amount",
        lambda r: _json().replace(b"12.5", b"1e999"),
        {"invalid_json", "invalid_event"},
    ),
    ("negative amount", lambda r: _json(amount=-r.random()), {"invalid_event"}),
    ("huge amount", lambda r: _json(amount=10.0 ** r.randint(10, 300)), {"invalid_event"}),
    (
        "far-future time",
        lambda r: _json(timestamp=f"209{r.randint(0, 9)}-06-01T00:00:00Z"),
        {"invalid_event"},
    ),
    ("naive time", lambda r: _json(timestamp="2024-01-01T00:00:00"), {"invalid_event"}),
    (
        "missing field",
        lambda r: _without(r.choice(["user_id", "merchant_id", "amount"])),
        {"invalid_event"},
    ),
    ("pii field", lambda r: _json(card_number="4111111111111111"), {"invalid_event"}),
    ("control chars", lambda r: _json(merchant_id="m\x00\x07"), {"invalid_event"}),
    (
        "not an object",
        lambda r: r.choice([b"[]", b"1", b"null", b'"tx"', b"true"]),
        {"invalid_event"},
    ),
    ("empty", lambda r: b"", {"invalid_json"}),
    ("long id", lambda r: _json(user_id="u" * r.randint(65, 5000)), {"invalid_event"}),
]
OVERSIZED = ("oversized", lambda r: b'{"pad":"' + b"x" * 70_000 + b'"}', {"oversized"})


def poison(count: int, seed: int = 7) -> list[tuple[str, bytes, set[str]]]:
    rng = random.Random(seed)
    made = []
    for i in range(count):
        kind, make, reasons = OVERSIZED if i % 100 == 99 else KINDS[i % len(KINDS)]
        made.append((kind, make(rng), reasons))
    return made


def test_ten_thousand_malformed_messages_go_to_the_dlq_and_every_valid_one_is_scored(
    fraudstream_stack: Stack,
) -> None:
    stack = fraudstream_stack
    valid = (DATA / "traffic.jsonl").read_bytes().splitlines()[:2000]
    bad = poison(10_000)
    worker = stack.start_worker()
    producer = Producer({**stack.broker.client_config(), "linger.ms": 50})
    for i, (_kind, value, _) in enumerate(bad):
        producer.produce(stack.topics["transactions"], value=value, key=f"k{i % 97}".encode())
        if i % 5 == 0:
            line = valid[i // 5]
            producer.produce(
                stack.topics["transactions"], value=line, key=json.loads(line)["user_id"].encode()
            )
        producer.poll(0)
    assert producer.flush(30) == 0
    ids = {json.loads(line)["transaction_id"] for line in valid}
    scored = stack.scores(ids, timeout=180)
    parsed = sorted(
        stack.dead_letters(len(bad), timeout=180), key=lambda d: (d.partition, d.offset)
    )
    assert worker.running, "the worker died on input"
    worker.stop()
    assert set(scored) == ids
    scored.single()  # each valid one scored exactly once
    assert len(parsed) == len(bad)
    # Each partition keeps the producer's order: the n-th letter of a partition is the n-th bad
    # message sent to it, so every letter can be matched to what was sent, bytes and reason.
    sent_by_key: dict[bytes, list[tuple[str, bytes, set[str]]]] = {}
    for i, item in enumerate(bad):
        sent_by_key.setdefault(f"k{i % 97}".encode(), []).append(item)
    seen: Counter[bytes] = Counter()
    wrong = []
    for letter in sorted(parsed, key=lambda d: (d.partition, d.offset)):
        key = base64.b64decode(letter.original_key or "")
        kind, value, reasons = sent_by_key[key][seen[key]]
        seen[key] += 1
        if base64.b64decode(letter.original_value) != value or letter.reason not in reasons:
            wrong.append((kind, letter.reason, letter.error[:80]))
    assert wrong == []
    assert "Traceback" not in stack.logs()

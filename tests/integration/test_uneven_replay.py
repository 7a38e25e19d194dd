"""Partitions that progress unevenly, at a real team's size: 60 days of simulated traffic with
labels, produced as fast as possible into a fresh worker, one partition's transactions three
days of event time behind the others' throughout (interleaved, so it is never idle).

Before the topology of hourly partials, this stalled: each batch of the lagging partition asked
for an old merchant boundary that was rebuilt by re-scanning every retained event. Now every
transaction must be scored exactly once, every score must equal `score_offline` with the same
labels, no partition may be re-read, and the wall time is printed next to an evenly produced
replay of the same traffic (a comparison for the reader, not an assertion).
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from fraudstream.testing import Stack
from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.scoring import Scorer, score_offline
from producers.simulator import SimulationConfig, simulate, write_traffic
from schemas.events import FraudScore, Label, Transaction, epoch_ms
from schemas.jsonl import read_events
from tests.integration.test_worker import assert_same

pytestmark = pytest.mark.integration

WORLD = SimulationConfig(customers=500, merchants=1000, days=60, seed=21)
PARTITIONS = 4
LAG_MS = 3 * 86_400_000
LAGGING = 3


@dataclass(frozen=True)
class World:
    transactions: Path
    labels: Path
    expected: dict[str, FraudScore]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fraudstream_registry: Path) -> World:
    directory = tmp_path_factory.mktemp("uneven-world")
    tx_file, label_file = write_traffic(simulate(WORLD), directory)
    scorer = Scorer.from_loaded(ModelRegistry(fraudstream_registry, "fraud-xgb").load())
    frauds = attributed_frauds(read_events(label_file, Label).records)
    assert frauds.unattributable == 0
    txs = read_events(tx_file, Transaction).records
    expected = {s.transaction_id: s for s in score_offline(txs, scorer, frauds.frauds)}
    return World(tx_file, label_file, expected)


def _partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


def _ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text))


def produce(stack: Stack, world: World, lag_ms: int) -> float:
    """Every record in one merged order — transactions by event time (the lagging partition
    `lag_ms` later), labels by labeled_at — as fast as the producer goes; returns the start."""
    records = []
    for line in world.transactions.read_bytes().splitlines():
        tx = json.loads(line)
        partition = _partition(tx["user_id"])
        shift = lag_ms if partition == LAGGING else 0
        records.append((_ms(tx["timestamp"]) + shift, "transactions", partition, line))
    for line in world.labels.read_bytes().splitlines():
        label = json.loads(line)
        partition = _partition(label["transaction_id"])
        records.append((_ms(label["labeled_at"]), "labels", partition, line))
    records.sort(key=lambda r: r[0])
    producer = Producer(
        {**stack.broker.client_config(), "linger.ms": 50, "batch.num.messages": 10_000}
    )
    started = time.monotonic()
    for _, role, partition, line in records:
        producer.produce(stack.topics[role], value=line, partition=partition)
        producer.poll(0)
    assert producer.flush(60) == 0
    return started


def replay_and_score(
    stack: Stack, world: World, lag_ms: int
) -> tuple[list[FraudScore], float, dict[str, float]]:
    worker = stack.start_worker("uneven" if lag_ms else "even")  # ready to score
    started = produce(stack, world, lag_ms)
    scores = stack.scores(set(world.expected), timeout=600)
    seconds = time.monotonic() - started
    metrics = worker.scrape()
    worker.stop()  # exit code 0 asserted
    return [copy for copies in scores.values() for copy in copies], seconds, metrics


def test_a_partition_three_days_behind_throughout_scores_exactly_as_offline(
    fraudstream_stack: Stack, fraudstream_topics: Callable[..., dict[str, str]], world: World
) -> None:
    stack = fraudstream_stack
    scores, uneven_s, metrics = replay_and_score(stack, world, LAG_MS)
    copies = Counter(s.transaction_id for s in scores)
    assert set(copies) == set(world.expected)
    assert max(copies.values()) == 1, "a transaction was scored twice"
    for score in scores:
        assert_same(score, world.expected[score.transaction_id])
    assert any(s.features["merchant_fraud_rate_30d"] > 0 for s in scores)
    assert metrics.get('fraudstream_merchant_late_total{kind="tx"}', 0) == 0
    assert "offset gap" not in stack.logs(), "a partition had to be read again"

    # The same traffic, produced evenly, into fresh topics and a fresh worker.
    stack.topics = fraudstream_topics(*stack.topics)
    stack.app_id += "-even"
    even, even_s, _ = replay_and_score(stack, world, 0)
    assert {s.transaction_id for s in even} == set(world.expected)
    print(
        f"\n{len(world.expected):,} transactions and their labels, 60 days: uneven "
        f"(partition {LAGGING} three days behind) {uneven_s:.1f} s, even {even_s:.1f} s, "
        f"ratio {uneven_s / even_s:.2f}"
    )

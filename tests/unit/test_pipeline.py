"""The scoring pipeline without a broker: in-memory store, sink and merchant log.

Each test replays recorded traffic as a cluster would see it — partitions of transactions and
labels, fed to one or two pipelines in an uneven interleaving, with restarts — and checks every
score against `score_offline` on the same input: the same features, the same score, once.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from models.canary import Canary
from models.fraud_labels import attributed_frauds
from models.merchant_history import MerchantHistory
from models.merchant_partials import Source
from models.scoring import Scorer, score_offline
from schemas.events import FraudScore, Label, Transaction, epoch_ms
from schemas.jsonl import read_events
from stream_app import merchant_log
from stream_app.pipeline import Outcome, PipelineConfig, Record, ScoringPipeline
from stream_app.user_records import MemoryStore
from tests.conftest import TrainedRegistry

DATA = Path(__file__).resolve().parents[1] / "data"
TX_PARTITIONS, LABEL_PARTITIONS = 4, 2
DAY_MS = 86_400_000


class MemorySink:
    """Records what is sent, by topic; `deliver` reports it delivered."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[bytes | None, bytes, int | None]]] = {}
        self.dropped = 0
        self._pending = 0

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: Any = None,
        fallback: Any = None,
    ) -> None:
        self.sent.setdefault(topic, []).append((key, value, partition))
        self._pending += 1

    def send_all(self, topic: str, records: Any) -> None:
        for key, value, partition in records:
            self.sent.setdefault(topic, []).append((key, value, partition))
            self._pending += 1

    async def deliver(self) -> int:
        done, self._pending = self._pending, 0
        return done

    def scores(self) -> list[FraudScore]:
        return [FraudScore.model_validate_json(v) for _, v, _ in self.sent.get("scores", [])]


@dataclass
class Champion:
    champion: Scorer
    shadow: Scorer | None = None
    canary: Canary | None = None


CONFIG = PipelineConfig(
    transactions_topic="transactions",
    labels_topic="labels",
    scores_topic="scores",
    dlq_topic="dlq",
    merchant_log_topic="merchant-log",
    scores_partitions=TX_PARTITIONS,
    batch_max=200,
)
SOURCES = [Source("tx", p) for p in range(TX_PARTITIONS)] + [
    Source("labels", q) for q in range(LABEL_PARTITIONS)
]


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


@dataclass
class Topics:
    """The input topics as partitions of (event time, record)."""

    partitions: dict[Source, list[tuple[int, bytes]]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Topics:
        topics = cls({s: [] for s in SOURCES})
        for line in (DATA / "traffic.jsonl").read_bytes().splitlines():
            tx = json.loads(line)
            source = Source("tx", partition_of(tx["user_id"], TX_PARTITIONS))
            topics.partitions[source].append((_ms(tx["timestamp"]), line))
        for line in (DATA / "traffic_labels.jsonl").read_bytes().splitlines():
            label = json.loads(line)
            source = Source("labels", partition_of(label["transaction_id"], LABEL_PARTITIONS))
            topics.partitions[source].append((_ms(label["labeled_at"]), line))
        return topics


def _ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text))


class Cluster:
    """Pipelines sharing one merchant log (a list), each owning some partitions."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.log: list[bytes] = []
        self.read: dict[int, int] = {}
        self.store = MemoryStore()  # the user table, as its changelog would restore it
        self.sink = MemorySink()
        self.committed: dict[Source, int] = {}
        self.pipelines: dict[int, ScoringPipeline] = {}
        self.assemblers: dict[int, merchant_log.Assembler] = {}
        self.make_canary: Callable[[], Canary | None] = lambda: None
        """Each started worker's own canary step (a fresh assigner: nothing shared)."""
        self.config = CONFIG
        self.now = 0.0
        self.tick_s = 0.0
        """How far the pipelines' clock moves per fed chunk."""

    def start(self, worker: int, owns: list[Source]) -> ScoringPipeline:
        pipeline = ScoringPipeline(
            self.config,
            Champion(self.scorer, canary=self.make_canary()),
            self.store,
            self.sink,
            MerchantHistory(SOURCES),
            clock=lambda: self.now,
            committed=self.committed.get,
        )
        self.pipelines[worker] = pipeline
        self.assemblers[worker] = merchant_log.Assembler()
        self.read[worker] = 0
        self.sync(worker)  # caught up with the log before taking partitions over
        for source in owns:
            last = self.last_final(worker, source)
            start = pipeline.assign(source, last, self.committed.get(source))
            self.positions[source] = start
        return pipeline

    positions: dict[Source, int] = {}  # noqa: RUF012 - reset per test in the fixture

    def last_final(self, worker: int, source: Source) -> Any:
        assembler = merchant_log.Assembler()
        last = None
        for value in self.log:
            final = assembler.add(value)
            if final is not None and final.source == source:
                last = final
        return last

    def sync(self, worker: int) -> None:
        """Worker reads what is new on the merchant log (its own finals included)."""
        new = [v for _, v, _ in self.sink.sent.get("merchant-log", [])][len(self.log) :]
        self.log.extend(new)
        pipeline, assembler = self.pipelines[worker], self.assemblers[worker]
        while self.read[worker] < len(self.log):
            final = assembler.add(self.log[self.read[worker]])
            self.read[worker] += 1
            if final is not None:
                self.handle(asyncio.run(pipeline.on_final(final)))

    def feed(self, worker: int, source: Source, records: list[Record]) -> None:
        self.now += self.tick_s
        self.handle(asyncio.run(self.pipelines[worker].process({source: records})))

    def handle(self, outcome: Outcome) -> None:
        assert not outcome.seek, outcome.seek
        for source, offsets in outcome.acked.items():
            self.acked.setdefault(source, set()).update(offsets)

    acked: dict[Source, set[int]] = {}  # noqa: RUF012 - reset per test in the fixture

    def commit(self) -> None:
        """What Kafka would commit: the contiguous acknowledged prefix of each partition."""
        for source, offsets in self.acked.items():
            offset = self.committed.get(source, 0)
            while offset in offsets:
                offset += 1
            self.committed[source] = offset

    def idle_all(self) -> None:
        for _ in range(3):
            for worker, pipeline in self.pipelines.items():
                self.handle(asyncio.run(pipeline.idle(pipeline.owned())))
                self.sync(worker)


@pytest.fixture
def cluster(trained_registry: TrainedRegistry) -> Cluster:
    made = Cluster(Scorer.from_loaded(trained_registry.store().load()))
    made.positions = {}
    made.acked = {}
    return made


@pytest.fixture(scope="module")
def offline(trained_registry: TrainedRegistry) -> dict[str, FraudScore]:
    scorer = Scorer.from_loaded(trained_registry.store().load())
    txs = read_events(DATA / "traffic.jsonl", Transaction).records
    frauds = attributed_frauds(read_events(DATA / "traffic_labels.jsonl", Label).records)
    assert frauds.unattributable == 0 and frauds.frauds
    return {s.transaction_id: s for s in score_offline(txs, scorer, frauds.frauds)}


def uneven_schedule(
    topics: Topics, lag_ms: int, lagging: Source, chunk: int = 150
) -> list[tuple[Source, list[tuple[int, bytes]]]]:
    """Chunks of each partition in the order a fast replay delivers them, `lagging` kept
    `lag_ms` of event time behind the others throughout (interleaved, never idle)."""
    cursor = dict.fromkeys(topics.partitions, 0)
    order = []
    while any(cursor[s] < len(r) for s, r in topics.partitions.items()):

        def clock(source: Source) -> int:
            records, at = topics.partitions[source], cursor[source]
            if at >= len(records):
                return 2**62
            shift = lag_ms if source == lagging else 0
            return records[at][0] + shift

        source = min(topics.partitions, key=clock)
        start = cursor[source]
        cursor[source] = min(start + chunk, len(topics.partitions[source]))
        order.append((source, topics.partitions[source][start : cursor[source]]))
    return order


def records(chunk: list[tuple[int, bytes]], first_offset: int) -> list[Record]:
    return [Record(first_offset + i, None, value, 0.0) for i, (_, value) in enumerate(chunk)]


def check(scores: list[FraudScore], offline: dict[str, FraudScore]) -> None:
    copies = Counter(s.transaction_id for s in scores)
    assert set(copies) == set(offline)
    for score in scores:
        expected = offline[score.transaction_id]
        assert score.features == expected.features, score.transaction_id
        assert score.score == expected.score and score.reasons == expected.reasons


def run_schedule(
    cluster: Cluster,
    schedule: list[tuple[Source, list[tuple[int, bytes]]]],
    worker_of: Callable[[Source], int],
    stop_after: int | None = None,
) -> None:
    for step, (source, chunk) in enumerate(schedule):
        if stop_after is not None and step >= stop_after:
            return
        worker = worker_of(source)
        offset = cluster.positions.setdefault(source, 0)
        cluster.positions[source] = offset + len(chunk)
        cluster.feed(worker, source, records(chunk, offset))
        for other in cluster.pipelines:
            cluster.sync(other)


def test_a_partition_three_days_behind_scores_exactly_as_offline(
    cluster: Cluster, offline: dict[str, FraudScore]
) -> None:
    topics = Topics.load()
    cluster.start(0, SOURCES)
    schedule = uneven_schedule(topics, 3 * DAY_MS, Source("tx", 2))
    run_schedule(cluster, schedule, lambda source: 0)
    cluster.idle_all()
    scores = cluster.sink.scores()
    check(scores, offline)
    assert max(Counter(s.transaction_id for s in scores).values()) == 1
    assert cluster.pipelines[0].queued() == 0
    assert any(s.features["merchant_fraud_rate_30d"] > 0 for s in scores)


def test_two_workers_sharing_the_partitions_score_exactly_as_offline(
    cluster: Cluster, offline: dict[str, FraudScore]
) -> None:
    topics = Topics.load()
    cluster.start(0, [s for s in SOURCES if s.partition % 2 == 0])
    cluster.start(1, [s for s in SOURCES if s.partition % 2 == 1])
    schedule = uneven_schedule(topics, DAY_MS, Source("tx", 1))
    run_schedule(cluster, schedule, lambda source: source.partition % 2)
    cluster.idle_all()
    check(cluster.sink.scores(), offline)
    # each worker parsed only its own partitions' transactions
    consumed = [p.stats.consumed for p in cluster.pipelines.values()]
    assert sum(consumed) == len(offline) and min(consumed) > 0


def test_a_restarted_worker_rebuilds_its_partials_and_repeats_nothing_differently(
    cluster: Cluster, offline: dict[str, FraudScore]
) -> None:
    kill_and_resume(cluster, Topics.load())
    scores = cluster.sink.scores()
    check(scores, offline)
    assert cluster.pipelines[0].stats.replayed > 0 or len(scores) == len(offline)


WRITE_BEHIND = replace(CONFIG, users_write_behind_s=1.0)


def test_users_records_written_behind_are_written_once_per_period_and_hold_their_offsets(
    cluster: Cluster, offline: dict[str, FraudScore]
) -> None:
    """Within `users_write_behind_s` a user scored many times is written once, and nothing
    is acknowledged before the records it depends on are written."""
    topics = Topics.load()
    cluster.config = WRITE_BEHIND
    pipeline = cluster.start(0, SOURCES)
    schedule = uneven_schedule(topics, DAY_MS, Source("tx", 3))
    step = 0
    while pipeline.stats.scored < 1_000:  # the clock stands still: nothing is due
        run_schedule(cluster, schedule[step:], lambda source: 0, stop_after=1)
        step += 1
    assert pipeline.held() > 0 and cluster.acked == {} and cluster.store.writes == 0
    cluster.tick_s = 1.0
    run_schedule(cluster, schedule[step:], lambda source: 0, stop_after=1)  # due
    assert pipeline.held() == 0 and cluster.acked
    assert cluster.store.writes == len(cluster.store.values) < pipeline.stats.scored / 2

    cluster.tick_s = 0.25
    run_schedule(cluster, schedule[step + 1 :], lambda source: 0)
    cluster.idle_all()
    cluster.handle(asyncio.run(pipeline.flush()))
    check(cluster.sink.scores(), offline)
    assert pipeline.held() == 0
    for source, chunk in topics.partitions.items():
        assert cluster.acked[source] == set(range(len(chunk))), source

    every_call = Cluster(cluster.scorer)  # the same schedule, written after every call
    every_call.positions, every_call.acked = {}, {}
    every_call.start(0, SOURCES)
    run_schedule(every_call, schedule, lambda source: 0)
    every_call.idle_all()
    assert every_call.store.values == cluster.store.values  # the same final state
    assert cluster.store.writes < every_call.store.writes


def test_a_worker_killed_with_users_records_held_back_repeats_nothing_differently(
    cluster: Cluster, offline: dict[str, FraudScore]
) -> None:
    """Killed while records and their offsets are held: the committed offsets never went past
    the state in the table, so what is redelivered is scored again exactly as before."""
    cluster.config, cluster.tick_s = WRITE_BEHIND, 0.3
    killed = kill_and_resume(cluster, Topics.load())
    assert killed.held() > 0 and killed.users.touched() > 0
    check(cluster.sink.scores(), offline)


def kill_and_resume(cluster: Cluster, topics: Topics) -> ScoringPipeline:
    """Half the traffic, commit, kill -9, restart and the rest; returns the killed pipeline."""
    killed = cluster.start(0, SOURCES)
    schedule = uneven_schedule(topics, DAY_MS, Source("tx", 3))
    half = len(schedule) // 2
    run_schedule(cluster, schedule, lambda source: 0, stop_after=half)
    cluster.commit()
    # kill -9: uncommitted work is redelivered from the committed offsets; the table (store)
    # keeps what the dead worker wrote; the merchant log keeps what it published.
    cluster.pipelines.clear()
    cluster.positions = {}
    cluster.start(0, SOURCES)
    resumed = [
        (source, topics.partitions[source][cluster.positions[source] :]) for source in SOURCES
    ]
    rest = uneven_schedule(Topics(dict(resumed)), DAY_MS, Source("tx", 3))
    offsets = dict(cluster.positions)
    for source, chunk in rest:
        cluster.feed(0, source, records(chunk, offsets[source]))
        offsets[source] += len(chunk)
        cluster.sync(0)
    cluster.idle_all()
    return killed

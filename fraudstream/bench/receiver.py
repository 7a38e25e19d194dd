"""The downstream consumer: receipt times stamped per message, on a thread of its own.

A consumer that stamps receipts after a batch call (`consume(500, timeout=...)`) stamps every
message as late as the batch's end. Here a dedicated thread calls `poll()` for one message at
a time and reads the clock as soon as it returns, before any parsing; the transaction id is
then found with a byte search (a full JSON parse per score would slow the stamping thread).
The consumer joins no group: it reads every partition of the output topic from the start,
with the same small fetch wait as the apps measured (on the embedded broker a fetch waits for
that long before answering, so up to that wait is part of every latency, baselines included).

While another thread of this process holds the GIL, the receiver cannot read the clock; the
benchmark lowers the interpreter's switch interval while it runs (`run.py`) to bound that.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

_TRANSACTION_ID = re.compile(rb'"transaction_id"\s*:\s*"([^"\\]*)"')


def transaction_id_of(value: bytes | None) -> str | None:
    """The `transaction_id` of an output (score or passed-through transaction), or None."""
    if not value:
        return None
    found = _TRANSACTION_ID.search(value)
    if found is not None:
        return found.group(1).decode(errors="replace")
    try:  # escaped characters in the id: take the slow road
        document = json.loads(value)
    except ValueError:
        return None
    found_id = document.get("transaction_id") if isinstance(document, dict) else None
    return found_id if isinstance(found_id, str) else None


class Receipts:
    """First receipt time per transaction id, in arrival order; repeats are counted apart.

    Written by the receiver thread only. Readers take slices of the append-only lists (atomic
    under the GIL) instead of a lock, so a waiting reader never delays a receipt stamp.
    """

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.order: list[str] = []
        self.times: list[float] = []
        self.duplicates = 0
        self.unreadable = 0

    def add(self, transaction_id: str | None, at: float) -> None:
        if transaction_id is None:
            self.unreadable += 1
        elif transaction_id in self.first:
            self.duplicates += 1  # at-least-once: a redelivered output counts once
        else:
            self.first[transaction_id] = at
            self.times.append(at)
            self.order.append(transaction_id)

    def count(self) -> int:
        return len(self.order)


class Receiver:
    """Consumes one topic on a daemon thread into `receipts` until `stop()`."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        topic: str,
        fetch_wait_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.topic = topic
        self.clock = clock
        self.receipts = Receipts()
        self._stopping = threading.Event()
        self._errors: list[str] = []
        self._consumer = Consumer(
            {
                **client_config,
                "group.id": f"bench-receiver-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
                "fetch.min.bytes": 1,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        )
        self._thread = threading.Thread(target=self._loop, name=f"receiver-{topic}", daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def _loop(self) -> None:
        poll, clock, add = self._consumer.poll, self.clock, self.receipts.add
        while not self._stopping.is_set():
            message = poll(0.05)
            if message is None:
                continue
            at = clock()  # first thing after poll returns: the receipt time
            if message.error() is not None:
                if len(self._errors) < 5:
                    self._errors.append(str(message.error()))
                continue
            add(transaction_id_of(message.value()), at)

    def wait_for(
        self,
        wanted: Collection[str],
        timeout_s: float,
        alive: Callable[[], bool] = lambda: True,
        what: str = "outputs",
    ) -> None:
        """Block until every wanted id arrived; TimeoutError / RuntimeError otherwise."""
        deadline = time.monotonic() + timeout_s
        remaining = set(wanted)
        cursor = 0
        while True:
            arrived = self.receipts.order[cursor:]
            cursor += len(arrived)
            remaining.difference_update(arrived)
            missing = len(remaining)
            if missing == 0:
                return
            if not alive():
                raise RuntimeError(f"an app under test exited; {missing} {what} missing")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{missing} of {len(wanted)} {what} missing on {self.topic} "
                    f"after {timeout_s:.0f} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._consumer.close()

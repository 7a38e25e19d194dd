"""The run's shared context: where the broker is, how clients connect, fresh topics per phase."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudstream.bench.config import BenchConfig
from fraudstream.bench.prepare import Prepared
from fraudstream.bench.receiver import Receiver
from fraudstream.bench.sender import StampingProducer
from fraudstream.bench.traffic import Record

INPUT, OUTPUT = "transactions", "fraud-scores"


@dataclass
class Session:
    config: BenchConfig
    bootstrap: str
    client: dict[str, str]
    """confluent-kafka connection settings (security included) for the bench's own clients."""
    work: Path
    prepared: Prepared
    fetch_wait_ms: int
    progress: Callable[[str], None]
    broker_pid: int | None = None
    external: bool = False
    created_topics: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return self.prepared.records

    def topics(self, *roles: str) -> dict[str, str]:
        """Fresh, uniquely named topics for one phase (the embedded broker never forgets)."""
        from fraudstream.topics import create_system_topics

        run = uuid.uuid4().hex[:8]
        names = {role: f"bench-{run}-{role}" for role in roles}
        create_system_topics(self.client, names, self.config.partitions)
        self.created_topics.extend(names.values())
        return names

    def subprocess_env(self) -> dict[str, str]:
        """Environment every app under test gets on top of this process's."""
        env = {
            "FRAUD_KAFKA_BOOTSTRAP": self.bootstrap,
            "FRAUD_FETCH_WAIT_MS": str(self.fetch_wait_ms),
        }
        if not self.external:
            env["FRAUD_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"  # the embedded broker's only one
        return env

    def producer(self, linger_ms: float) -> StampingProducer:
        from producers.replay import producer_config

        return StampingProducer(producer_config(self.client, round(linger_ms)))

    def receiver(self, topic: str) -> Receiver:
        return Receiver(self.client, topic, self.fetch_wait_ms).start()

    def delete_topics(self) -> None:
        """On an external cluster, remove what the run created (best effort)."""
        if not self.external or not self.created_topics:
            return
        from confluent_kafka.admin import AdminClient

        futures = AdminClient(dict(self.client)).delete_topics(self.created_topics)
        for future in futures.values():
            try:
                future.result(timeout=30)
            except Exception as exc:
                self.progress(f"could not delete a bench topic: {exc}")


def describe(session: Session) -> dict[str, Any]:
    return {
        "broker": f"external ({session.bootstrap})" if session.external else "embedded (tansu)",
        "fetch_wait_ms": session.fetch_wait_ms,
    }

"""The broker for integration tests: testcontainers' Kafka when a Docker engine answers,
otherwise the embedded Tansu broker started (and stopped) by this fixture. Same tests either way.

Tansu never deletes data and slows down as batches pile up in a partition, so every test uses
fresh, uniquely named topics (`fresh_topics`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.settings import TOPIC_ROLES, topic_environment
from fraudstream.topics import create_system_topics


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    kind: str  # "embedded" or "testcontainers"
    pid: int | None = None  # the embedded broker's process (fault tests freeze it)

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # no engine, no socket, no permission: use the embedded broker
        return False
    return True


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if os.environ.get("FRAUDSTREAM_TEST_BROKER", "auto") != "embedded" and _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
            yield Broker(kafka.get_bootstrap_server(), "testcontainers")
        return
    embedded = EmbeddedBroker(tmp_path_factory.mktemp("broker-state"), free_port())
    embedded.start(timeout_s=60)
    try:
        yield Broker(embedded.bootstrap, "embedded", embedded.status().pid)
    finally:
        embedded.stop()


@pytest.fixture
def fresh_topics(broker: Broker) -> Callable[..., dict[str, str]]:
    """Create uniquely named topics for one test: fresh_topics("transactions", partitions=4)."""

    def make(*roles: str, partitions: int = 4) -> dict[str, str]:
        run = uuid.uuid4().hex[:8]
        names = {role: f"t-{run}-{role}" for role in roles}
        create_system_topics(broker.client_config(), names, partitions)
        return names

    return make


@pytest.fixture
def tmp_file(tmp_path: Path) -> Callable[[str], Path]:
    return lambda name: tmp_path / name


# -- running workers ----------------------------------------------------------------------------
DATA = Path(__file__).resolve().parents[1] / "data"


STACK_TOPICS = TOPIC_ROLES


@dataclass
class Stack:
    """Fresh topics, an app id and a registry for one test's workers."""

    broker: Broker
    topics: dict[str, str]
    app_id: str
    registry: Path
    state_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "FRAUD_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            **topic_environment(self.topics),
            "FRAUD_PARTITIONS": "4",
            "FRAUD_APP_ID": self.app_id,
            "FRAUD_REGISTRY_DIR": str(self.registry),
            "FRAUD_STATE_DIR": str(self.state_dir),
            "FRAUD_IDLE_PARTITION_S": "1.0",
            "FRAUD_METRICS_PORT": "0",
        } | self.extra_env

    def start_worker(self, name: str = "w") -> subprocess.Popen[bytes]:
        return self.start(f"worker-{name}", "worker")

    def start(
        self, log_name: str, *command: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A `fraudstream` command in the background, its output in STATE_DIR/LOG_NAME.log."""
        log = (self.state_dir / f"{log_name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "fraudstream.cli", *command],
            env={**os.environ, **self.env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def cli(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a `fraudstream` command to completion against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "fraudstream.cli", *command],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def replay(
        self, path: Path, topic_role: str = "transactions", send_invalid: bool = False
    ) -> None:
        from producers.replay import Pacer, read_recording, replay

        stats = replay(
            read_recording(path, send_invalid),
            self.topics[topic_role],
            self.broker.client_config(),
            Pacer(),
        )
        assert stats.failed == 0, stats.first_errors

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.state_dir.glob("worker-*.log"))


def collect(
    broker: Broker,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout_s: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
) -> list[Any]:
    """Read `topic` from the start until `until(messages)` holds; fail clearly on timeout."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **broker.client_config(),
            "group.id": "collector",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {what} on {topic} "
                    f"(have {len(messages)} messages)\n--- worker logs ---\n{logs()[-3000:]}"
                )
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def covers(ids: set[str], key: str = "transaction_id") -> Callable[[list[Any]], bool]:
    """A `collect` condition: every id in `ids` seen (reads each new message once)."""
    seen: set[str] = set()
    read = 0

    def done(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            seen.add(json.loads(message.value())[key])
        read = len(messages)
        return ids <= seen

    return done


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"worker did not stop within {timeout_s} s of signal {sig}") from None


@pytest.fixture
def stack(
    broker: Broker,
    fresh_topics: Callable[..., dict[str, str]],
    trained_registry: Any,
    tmp_path: Path,
) -> Iterator[Stack]:
    topics = fresh_topics(*STACK_TOPICS)
    made = Stack(
        broker=broker,
        topics=topics,
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        registry=trained_registry.root,
        state_dir=tmp_path,
    )
    yield made

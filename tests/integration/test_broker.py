"""The embedded broker's lifecycle through the CLI, and topic creation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from fraudstream.broker import EmbeddedBroker, answers_metadata, free_port
from fraudstream.settings import TOPIC_ROLES, topic_environment
from fraudstream.testing import Broker
from fraudstream.topics import create_topics

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudstream.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_start_status_stop_through_the_cli(tmp_path: Path) -> None:
    port = free_port()
    env = {"FRAUD_STATE_DIR": str(tmp_path), "FRAUD_BROKER_PORT": str(port)}
    bootstrap = f"127.0.0.1:{port}"
    assert cli(env, "broker", "status").returncode == 1
    started = cli(env, "broker", "start", "--json")
    assert started.returncode == 0, started.stderr
    status = json.loads(started.stdout)
    try:
        assert status["running"] and status["answering"]
        assert answers_metadata(bootstrap)  # start returned only once it answers
        assert (tmp_path / "broker" / "tansu.pid").exists()
        again = cli(env, "broker", "start", "--json")  # idempotent: same process
        assert json.loads(again.stdout)["pid"] == status["pid"]
        assert cli(env, "broker", "status").returncode == 0
    finally:
        stopped = cli(env, "broker", "stop", "--json")
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert not answers_metadata(bootstrap, timeout_s=0.5)
    assert not (tmp_path / "broker" / "tansu.pid").exists()
    assert "no broker was running" in cli(env, "broker", "stop").stdout


def test_start_listens_where_the_bootstrap_setting_points(tmp_path: Path) -> None:
    """A new user's path: set FRAUD_KAFKA_BOOTSTRAP once, and every command finds the broker."""
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"FRAUD_STATE_DIR": str(tmp_path), "FRAUD_KAFKA_BOOTSTRAP": bootstrap}
    started = cli(env, "broker", "start", "--json")
    try:
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["bootstrap"] == bootstrap
        assert json.loads(started.stdout)["note"] is None
        created = cli(env | {"FRAUD_TOPIC_TRANSACTIONS": f"tx-{free_port()}"}, "topics", "create")
        assert created.returncode == 0, created.stderr
        assert cli(env, "broker", "status").returncode == 0
    finally:
        assert cli(env, "broker", "stop").returncode == 0
    assert not answers_metadata(bootstrap, timeout_s=0.5)


def test_start_with_a_remote_bootstrap_says_where_it_listens(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "FRAUD_STATE_DIR": str(tmp_path),
        "FRAUD_KAFKA_BOOTSTRAP": "kafka.example.invalid:9092",
        "FRAUD_BROKER_PORT": str(port),
    }
    started = cli(env, "broker", "start")
    try:
        assert started.returncode == 0, started.stderr
        advice = f"export FRAUD_KAFKA_BOOTSTRAP=127.0.0.1:{port}"
        assert "not a loopback address" in started.stdout and advice in started.stdout
        followed = env | {"FRAUD_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
        created = cli(followed | {"FRAUD_TOPIC_TRANSACTIONS": f"tx-{port}"}, "topics", "create")
        assert created.returncode == 0, created.stderr
    finally:
        assert cli(env, "broker", "stop").returncode == 0


def test_stop_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        broker = EmbeddedBroker(tmp_path, free_port())
        broker.dir.mkdir(parents=True)
        # A stale pid file whose pid now belongs to someone else.
        broker.pid_file.write_text(json.dumps({"pid": stranger.pid, "command": ["tansu"]}))
        assert broker.stop() is False
        assert stranger.poll() is None, "stop() killed an unrelated process"
    finally:
        stranger.kill()
        stranger.wait()


def test_start_refuses_a_port_someone_else_serves(
    fraudstream_broker: Broker, tmp_path: Path
) -> None:
    if fraudstream_broker.kind != "embedded":
        pytest.skip("needs the embedded broker's port")
    port = int(fraudstream_broker.bootstrap.rsplit(":", 1)[1])
    result = cli(
        {"FRAUD_STATE_DIR": str(tmp_path), "FRAUD_BROKER_PORT": str(port)}, "broker", "start"
    )
    assert result.returncode == 2
    assert "already answers" in result.stderr
    assert "Traceback" not in result.stderr


def test_topics_create_is_idempotent_and_uses_the_partition_setting(
    fraudstream_broker: Broker,
) -> None:
    config = fraudstream_broker.client_config()
    names = [f"idem-{free_port()}-{i}" for i in range(2)]
    assert set(create_topics(config, names, 3).values()) == {"created"}
    assert set(create_topics(config, names, 3).values()) == {"exists"}
    metadata = AdminClient(config).list_topics(timeout=10)
    assert [len(metadata.topics[n].partitions) for n in names] == [3, 3]


def test_topics_create_cli_creates_every_topic_of_the_system(fraudstream_broker: Broker) -> None:
    suffix = str(free_port())
    names = {role: f"{role}-{suffix}" for role in TOPIC_ROLES}
    env = {
        "FRAUD_KAFKA_BOOTSTRAP": fraudstream_broker.bootstrap,
        "FRAUD_PARTITIONS": "2",
        **topic_environment(names),
    }
    result = cli(env, "topics", "create", "--json")
    assert result.returncode == 0, result.stderr
    topics = json.loads(result.stdout)["topics"]
    assert set(topics) == set(names.values()) and set(topics.values()) == {"created"}
    metadata = AdminClient(fraudstream_broker.client_config()).list_topics(timeout=10)
    partitions = {name: len(metadata.topics[name].partitions) for name in topics}
    # every topic with the configured partitions, but the internal logs: one, for one order
    logs = ("merchant-hours", "drift-inputs")
    assert partitions == {name: 1 if role in logs else 2 for role, name in names.items()}

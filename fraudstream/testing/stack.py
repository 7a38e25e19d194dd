"""One test's fraudstream: fresh topics, its own app id, a private registry, its services.

A `Stack` hands every service it starts the same `FRAUD_*` environment (and nothing from the
developer's shell), keeps their logs in its state directory, and stops them all in `close`,
reporting every exit code that was not the expected one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudstream.testing.broker import Broker
from fraudstream.testing.process import ServiceProcess
from fraudstream.testing.recordings import Replayed, Source, is_labels, replay
from fraudstream.testing.scores import (
    Scores,
    collect,
    covers,
    distinct,
    expected_ids,
    read_all,
    scored_progress,
)

if TYPE_CHECKING:
    from fraudstream.settings import Settings
    from schemas.events import DeadLetter


def fresh_topics(broker: Broker, *roles: str, partitions: int = 4) -> dict[str, str]:
    """Create uniquely named topics on `broker`: role -> name (the embedded broker never
    deletes data and slows down as batches pile up, so no two tests share a topic)."""
    from fraudstream.topics import create_system_topics

    run = uuid.uuid4().hex[:8]
    names = {role: f"t-{run}-{role}" for role in roles}
    create_system_topics(broker.client_config(), names, partitions)
    return names


def base_environment() -> dict[str, str]:
    """This process's environment without any FRAUD_* variable (a test sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}


class Stack:
    """Topics, app id, registry and state directory of one test, and the services it runs."""

    def __init__(
        self,
        broker: Broker,
        topics: Mapping[str, str],
        app_id: str,
        registry: Path,
        state_dir: Path,
        partitions: int = 4,
    ) -> None:
        self.broker = broker
        self.topics = dict(topics)
        self.app_id = app_id
        self.registry = registry
        self.state_dir = state_dir
        self.partitions = partitions
        self.extra_env: dict[str, str] = {}
        """More FRAUD_* variables for every service started from now on."""
        self.processes: list[ServiceProcess] = []

    @classmethod
    def create(cls, broker: Broker, registry: Path, state_dir: Path, partitions: int = 4) -> Stack:
        """Fresh topics for every role and a private copy of `registry` (tests may promote)."""
        from fraudstream.settings import TOPIC_ROLES

        copy = state_dir / "registry"
        shutil.copytree(registry, copy)
        topics = fresh_topics(broker, *TOPIC_ROLES, partitions=partitions)
        return cls(broker, topics, f"app-{uuid.uuid4().hex[:8]}", copy, state_dir, partitions)

    # -- configuration ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The FRAUD_* variables every service of this stack gets."""
        from fraudstream.settings import TOPIC_FIELDS, env_var

        fields = {
            "kafka_bootstrap": self.broker.bootstrap,
            **{TOPIC_FIELDS[role]: name for role, name in self.topics.items()},
            "partitions": str(self.partitions),
            "app_id": self.app_id,
            "registry_dir": str(self.registry),
            "state_dir": str(self.state_dir),
            "idle_partition_s": "1.0",
            "metrics_port": "0",
        }
        return {env_var(name): value for name, value in fields.items()} | self.extra_env

    def settings(self) -> Settings:
        """The settings the services see, for code under test that runs in this process."""
        from fraudstream.settings import ENV_PREFIX, Settings

        values = {k[len(ENV_PREFIX) :].lower(): v for k, v in self.env().items()}
        return Settings.model_validate(values)

    # -- services ---------------------------------------------------------------------------
    def start(
        self,
        name: str,
        *command: str,
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
    ) -> ServiceProcess:
        """`fraudstream COMMAND...` in the background; stopped (and checked) by `close`."""
        extra = dict(env or {})
        if metrics_port is not None:
            extra["FRAUD_METRICS_PORT"] = str(metrics_port)
        process = ServiceProcess(
            name,
            command,
            base_environment() | self.env() | extra,
            self.state_dir / f"{name}.log",
            metrics_port,
        )
        self.processes.append(process)
        return process

    def start_worker(
        self, name: str = "w", *, wait_ready: bool = True, env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """A scoring worker (log `worker-NAME.log`), by default once it is ready to score."""
        from fraudstream.broker import free_port

        worker = self.start(f"worker-{name}", "worker", env=env, metrics_port=free_port())
        if wait_ready:
            worker.wait_ready()
        return worker

    def start_retrain(self, *options: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """The retrain service with `options` (e.g. "--cooldown", "5s"); log `retrain.log`."""
        from fraudstream.broker import free_port

        return self.start("retrain", "retrain", *options, env=env, metrics_port=free_port())

    def cli(self, *command: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a `fraudstream` command to completion against this stack."""
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "fraudstream.cli", *command],
            env=base_environment() | self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def logs(self) -> str:
        """Every service's log, one after the other (for failure messages)."""
        return "\n".join(f"--- {p.name} ---\n{p.logs()}" for p in self.processes)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop everything; unexpected exit codes fail (unless an error is already raised)."""
        problems = self.close()
        if problems and exc_info[0] is None:
            raise AssertionError("fraudstream services ended badly:\n" + "\n\n".join(problems))

    def close(self) -> list[str]:
        """Stop every service still running (SIGTERM, expecting exit 0); the problems seen."""
        problems = []
        for process in reversed(self.processes):
            if process.running:
                try:
                    process.stop()
                except AssertionError as exc:
                    problems.append(str(exc))
            elif not process.observed and process.popen.returncode != 0:
                problems.append(
                    f"{process.name} exited by itself with {process.popen.returncode}\n"
                    f"--- {process.name} log ---\n{process.logs(3000)}"
                )
        return problems

    # -- traffic in, results out ------------------------------------------------------------
    def replay(
        self,
        source: Source,
        topic: str | None = None,
        *,
        speed: float = 0.0,
        rate: float | None = None,
        linger_ms: int = 20,
        send_invalid: bool = False,
    ) -> Replayed:
        """Produce a recording or events; `topic` is a role (default: `transactions`, or
        `labels` when the first record is a label)."""
        if not isinstance(source, str | Path):
            source = list(source)  # looked at twice: for the topic, then to send
        role = topic or ("labels" if is_labels(source) else "transactions")
        return replay(
            source,
            self.broker.client_config(),
            self.topics[role],
            speed=speed,
            rate=rate,
            linger_ms=linger_ms,
            send_invalid=send_invalid,
        )

    def read(
        self,
        role: str,
        until: Callable[[list[Any]], bool],
        timeout_s: float,
        what: str,
        progress: Callable[[list[Any]], str] | None = None,
    ) -> list[Any]:
        """Messages of a topic (by role) from the start until `until(messages)` holds."""
        topic = self.topics[role]
        config = self.broker.client_config()
        return collect(config, topic, until, timeout_s, what, self.logs, progress)

    def scores(self, expect: int | Replayed | Any, timeout: float = 120.0) -> Scores:
        """Every score published so far, once `expect` is covered: a `Replayed`, a collection
        of transaction ids, or a number of distinct transactions."""
        ids, count = expected_ids(expect)
        until = covers(ids) if ids is not None else distinct(count)
        what, progress = f"scores of {count} transactions", scored_progress(ids, count)
        return Scores.from_messages(self.read("fraud-scores", until, timeout, what, progress))

    def all_scores(self, timeout_s: float = 60.0) -> Scores:
        """Every score in the topic up to its end now: for counting copies once all is done."""
        return Scores.from_messages(
            read_all(self.broker.client_config(), self.topics["fraud-scores"], timeout_s)
        )

    def dead_letters(self, expect: int, timeout: float = 60.0) -> list[DeadLetter]:
        """At least `expect` dead letters (all read so far)."""
        from schemas.events import DeadLetter

        messages = self.read(
            "transactions-dlq", lambda m: len(m) >= expect, timeout, f"{expect} dead letters"
        )
        return [DeadLetter.model_validate_json(m.value()) for m in messages]

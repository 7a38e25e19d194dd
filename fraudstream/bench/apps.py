"""The apps under test, started for one phase: raw and bare-Faust pass-throughs, and one or
more real workers (`python -m fraudstream.cli worker`, configured only through FRAUD_*).

Each launcher is a context manager that yields the running processes and stops them at the
end. Workers get a metrics port of their own, so the phases can scrape them.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fraudstream.bench.processes import background, http_ok, profiled, tail, wait_until
from fraudstream.bench.session import INPUT, OUTPUT, Session
from fraudstream.settings import TOPIC_ROLES, topic_environment


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return f"--- {self.name} log tail:\n{tail(self.log)}"


Launcher = Callable[[Session, Mapping[str, str]], AbstractContextManager[list[Running]]]


@dataclass(frozen=True)
class AppSpec:
    """An app under test: its name in the results, its topics, how to start it."""

    key: str
    title: str
    roles: tuple[str, ...]
    launch: Launcher
    workers: int = 0


@contextmanager
def _pass_through(
    session: Session, topics: Mapping[str, str], name: str, app: str, *extra: str
) -> Iterator[list[Running]]:
    """`python -m fraudstream.bench APP BOOTSTRAP IN OUT EXTRA...` for the phase."""
    log = session.work / f"{app}-{uuid.uuid4().hex[:8]}.log"
    command = [sys.executable, "-m", "fraudstream.bench", app, session.bootstrap]
    command += [topics[INPUT], topics[OUTPUT], *extra]
    with background(command, log, env=session.subprocess_env(), cwd=session.work) as process:
        yield [Running(name, process, log)]


def raw_passthrough(
    session: Session, topics: Mapping[str, str]
) -> AbstractContextManager[list[Running]]:
    wait, linger = str(session.fetch_wait_ms), str(_worker_linger_ms())
    return _pass_through(session, topics, "raw pass-through", "raw-passthrough", wait, linger)


def faust_passthrough(tuned: bool) -> Launcher:
    kind = "tuned" if tuned else "default"

    def launch(
        session: Session, topics: Mapping[str, str]
    ) -> AbstractContextManager[list[Running]]:
        run = uuid.uuid4().hex[:8]
        return _pass_through(
            session,
            topics,
            f"bare Faust ({kind})",
            "faust-passthrough",
            f"bench-faust-{kind}-{run}",
            str(session.work / f"faust-{kind}-{run}"),
            str(session.config.partitions),
            *(["--tuned"] if tuned else []),
        )

    return launch


def _worker_linger_ms() -> float:
    from fraudstream.settings import get_settings

    return get_settings().producer_linger_ms


def workers(count: int, profile: str | None = None) -> Launcher:
    """`count` workers in one consumer group; py-spy on the first if `profile` is set."""

    @contextmanager
    def launch(session: Session, topics: Mapping[str, str]) -> Iterator[list[Running]]:
        from fraudstream.broker import free_port

        group = f"bench-worker-{uuid.uuid4().hex[:8]}"
        env = session.subprocess_env() | topic_environment(topics)
        env |= {
            "FRAUD_PARTITIONS": str(session.config.partitions),
            "FRAUD_APP_ID": group,
            "FRAUD_REGISTRY_DIR": str(session.prepared.registry),
            "FRAUD_MODEL_NAME": session.prepared.model_name,
            "FRAUD_IDLE_PARTITION_S": "1.0",
        }
        command = [sys.executable, "-m", "fraudstream.cli", "worker"]
        running: list[Running] = []
        with ExitStack() as stack:
            for index in range(count):
                state = session.work / f"{group}-{index}"
                state.mkdir()
                port = free_port()
                log = state / "worker.log"
                worker_env = env | {"FRAUD_STATE_DIR": str(state), "FRAUD_METRICS_PORT": str(port)}
                process = stack.enter_context(background(command, log, env=worker_env, cwd=state))
                running.append(Running(f"worker {index + 1}", process, log, port))
            if profile is not None:
                stack.enter_context(profiled(running[0].pid, profile, session.progress))
            yield running

    return launch


def wait_ready(apps: list[Running], timeout_s: float) -> None:
    """Workers: until each answers /readyz (model loaded, app started)."""
    for app in apps:
        if app.metrics_port is not None:
            wait_until(
                partial(http_ok, app.metrics_port, "/readyz"),
                timeout_s,
                f"{app.name} ready (/readyz)",
                app.alive,
            )


def pipeline(count: int = 1, profile: str | None = None) -> AppSpec:
    title = "pipeline, 1 worker" if count == 1 else f"pipeline, {count} workers"
    return AppSpec(f"pipeline_{count}w", title, TOPIC_ROLES, workers(count, profile), count)


RAW = AppSpec("raw", "raw aiokafka pass-through", (INPUT, OUTPUT), raw_passthrough)
FAUST_DEFAULT = AppSpec(
    "faust_default", "bare Faust, defaults", (INPUT, OUTPUT), faust_passthrough(tuned=False)
)
FAUST_TUNED = AppSpec(
    "faust_tuned", "bare Faust, tuned", (INPUT, OUTPUT), faust_passthrough(tuned=True)
)

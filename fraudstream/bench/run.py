"""One benchmark run: prepare the inputs, start (or reach) the broker, run the phases in an
order that puts each comparison side by side in time, collect one result document.

A phase that fails is recorded with its error (and its apps' log tails) and the run goes on:
a partial table that says what failed beats no table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fraudstream.bench import apps
from fraudstream.bench.components import components
from fraudstream.bench.config import PHASES, BenchConfig
from fraudstream.bench.drain import drain
from fraudstream.bench.glossary import DEFINITIONS
from fraudstream.bench.live import live
from fraudstream.bench.memory import memory
from fraudstream.bench.prepare import prepare
from fraudstream.bench.results import machine_facts
from fraudstream.bench.session import Session, describe
from fraudstream.bench.targets import verdicts

SWITCH_INTERVAL_S = 0.0005
"""While the run lasts: how long a thread may wait for the GIL (receipt stamps, sends)."""


def _guarded(work: Callable[[], dict[str, Any]], title: str) -> dict[str, Any]:
    try:
        return work()
    except Exception as exc:
        return {"app": title, "error": f"{type(exc).__name__}: {exc}"}


def run_drains(session: Session, phases: Sequence[str]) -> dict[str, Any]:
    specs: list[apps.AppSpec] = []
    if "drain" in phases:
        specs = [
            apps.RAW,
            apps.FAUST_DEFAULT,
            apps.FAUST_TUNED,
            apps.pipeline(1, session.config.profile),
        ]
    if "scale" in phases:
        if "drain" not in phases:
            specs.append(apps.pipeline(1))
        specs.append(apps.pipeline(2))
    return {spec.key: _guarded(partial(drain, session, spec), spec.title) for spec in specs}


def run_live(session: Session) -> dict[str, Any]:
    """Raw pass-through and pipeline back to back at each rate (same schedule and records)."""
    loads: dict[str, Any] = {}
    for load, rate in (("rate", session.config.rate), ("high_rate", session.config.high_rate)):
        phases: dict[str, Any] = {"offered_per_s": rate}
        for spec in (apps.RAW, apps.pipeline(1)):
            phases[spec.key] = _guarded(partial(live, session, spec, rate), spec.title)
        loads[load] = phases
    return loads


@contextmanager
def _broker(
    config: BenchConfig, work: Path, progress: Callable[[str], None]
) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid): a private embedded broker, or the cluster given."""
    if config.bootstrap is not None:
        yield config.bootstrap, None
        return
    from fraudstream.broker import EmbeddedBroker, free_port

    broker = EmbeddedBroker(work, free_port())
    progress(f"starting the embedded broker on {broker.bootstrap}")
    broker.start(timeout_s=60)
    try:
        yield broker.bootstrap, broker.status().pid
    finally:
        broker.stop()


def _client_config(config: BenchConfig, bootstrap: str) -> dict[str, str]:
    if config.bootstrap is None:
        return {"bootstrap.servers": bootstrap}
    from fraudstream.settings import get_settings

    return get_settings().kafka_client_config() | {"bootstrap.servers": bootstrap}


def _fetch_wait_ms(config: BenchConfig) -> int:
    if config.fetch_wait_ms is not None:
        return config.fetch_wait_ms
    from fraudstream.settings import get_settings

    return get_settings().fetch_wait_ms


def run(
    config: BenchConfig,
    progress: Callable[[str], None] = lambda _: None,
    phases: Sequence[str] = PHASES,
) -> dict[str, Any]:
    """Run the benchmark; returns the result document (see README, "Benchmark")."""
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    began = time.monotonic()
    result: dict[str, Any] = {
        "kind": "fraudstream-bench",
        "schema": 2,
        "machine": machine_facts(),
        "config": dict(config.__dict__),
        "phases": list(phases),
    }
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as tmp:
            work = Path(tmp)
            prepared = prepare(config, work, progress)
            with _broker(config, work, progress) as (bootstrap, broker_pid):
                session = Session(
                    config,
                    bootstrap,
                    _client_config(config, bootstrap),
                    work,
                    prepared,
                    _fetch_wait_ms(config),
                    progress,
                    broker_pid,
                    config.bootstrap is not None,
                )
                result |= describe(session)
                try:
                    _run_phases(session, phases, result)
                finally:
                    session.delete_topics()
    finally:
        sys.setswitchinterval(previous_interval)
    result["targets"] = [verdict.to_dict() for verdict in verdicts(result)]
    result["definitions"] = DEFINITIONS
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def _run_phases(session: Session, phases: Sequence[str], result: dict[str, Any]) -> None:
    if "drain" in phases or "scale" in phases:
        result["drain"] = run_drains(session, phases)
    if "live" in phases:
        result["live"] = run_live(session)
    if "memory" in phases and session.config.users > 0:
        result["memory"] = _guarded(lambda: memory(session), "memory")
    if "components" in phases:
        prepared = session.prepared
        result["components"] = _guarded(
            lambda: components(
                prepared.registry,
                prepared.model_name,
                prepared.transactions,
                session.progress,
                [(r.key, r.value) for r in prepared.records],
            ),
            "components",
        )

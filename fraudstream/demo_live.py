"""`fraudstream demo`: the streaming system end to end on the embedded broker, with a live view.

1. simulate 46 days of card traffic with a new fraud pattern (card testing) from day 36; train
   the first model on the weeks before day 42 (7-day label delay: it never sees the pattern);
2. start the embedded broker (free port), a scoring worker and the retrain service;
3. replay 30 days of history at full speed (fills user windows and merchant snapshots); the
   worker's drift detectors notice the new pattern, the retrain service trains challengers on
   the scored feature log, and the first one that passes the gate goes through a short canary
   rollout in the live phase (10 %, 50 %, 100 % of users, judged on live traffic) and is
   promoted if no guardrail breaks (or rolled back, saying why);
4. stream the last days live at a steady rate while a terminal view shows throughput,
   latency, decision mix, frauds caught, drift events, retrain outcomes and model versions;
5. stop everything it started after `live_minutes` or on Ctrl-C.

Sized for the embedded broker's limits (docs/CONTRACT.md: fetch cost grows with stored batches
per partition): the history goes in a handful of large batches, and in the live phase producer and
worker batch every 100 ms, so about 10 batches a second reach each topic — a 3-minute live
phase stays near 1,000 batches per partition, far below where Tansu slows down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.demo import day_start, simulate_and_train
from fraudstream.settings import TOPIC_ROLES, topic_environment
from fraudstream.topics import create_system_topics
from producers.replay import Pacer, read_recording, replay
from schemas.events import epoch_ms

DAYS = 46
LIVE_FROM_DAY = 42
HISTORY_DAYS = 30
DRIFT_DAY = 36
PARTITIONS = 2
RETRAIN = [
    "--cooldown", "30s", "--drift-attempts", "8",
    "--train-days", "14", "--gap-days", "0", "--valid-days", "2",
    "--holdout-days", "2", "--delay-days", "1", "--presume-genuine-after-days", "1",
    "--max-flagged-rate-rise", "0.1", "--winner", "canary",
]  # fmt: skip
"""Windows sized to the demo's six weeks; a new pattern may raise the share flagged by 10 %."""
CANARY = {
    "FRAUD_CANARY_STEPS": "10,50,100",
    "FRAUD_CANARY_HOLD_S": "20",
    "FRAUD_CANARY_MIN_DECISIONS": "40",
    "FRAUD_CANARY_FLAG_SLACK": "0.1",
}
"""A short rollout (a minute or so at the live rate) whose flagged-share guardrail allows the
same 10 % rise the demo's gate does."""


def _slice(source: Path, target: Path, start_ms: int, end_ms: int, field: str) -> int:
    count = 0
    with source.open("rb") as src, target.open("wb") as out:
        for line in src:
            when = json.loads(line)[field]
            ms = epoch_ms(datetime.fromisoformat(when))
            if start_ms <= ms < end_ms:
                out.write(line)
                count += 1
    return count


def run_live_demo(
    workdir: Path, console: Console, live_minutes: float = 3.0, rate: float = 40.0
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]fraudstream demo (streaming)")
    console.print(f"1/5 simulating {DAYS} days of card traffic and training the first model ...")
    data = simulate_and_train(workdir, DAYS, LIVE_FROM_DAY, drift_day=DRIFT_DAY)
    tx_path, label_path, version = data.transactions_file, data.labels_file, data.version
    live_start = epoch_ms(day_start(LIVE_FROM_DAY))
    history = workdir / "history.jsonl"
    live = workdir / "live.jsonl"
    known_labels = workdir / "labels_known.jsonl"
    live_labels = workdir / "labels_live.jsonl"
    first = epoch_ms(day_start(LIVE_FROM_DAY - HISTORY_DAYS))
    n_history = _slice(tx_path, history, first, live_start, "timestamp")
    n_live = _slice(tx_path, live, live_start, epoch_ms(day_start(DAYS)), "timestamp")
    _slice(label_path, known_labels, 0, live_start, "labeled_at")
    _slice(label_path, live_labels, live_start, epoch_ms(day_start(DAYS)), "labeled_at")
    is_fraud = {lab.transaction_id: lab.is_fraud for lab in data.labels}
    del data

    broker = EmbeddedBroker(workdir / "broker-state", free_port())
    processes: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        console.print(f"2/5 starting the embedded broker and a scoring worker ({version}) ...")
        broker.start()
        config = {"bootstrap.servers": broker.bootstrap}
        roles = {role: role for role in TOPIC_ROLES}  # every topic under its default name
        create_system_topics(config, roles, PARTITIONS)
        env = {
            **os.environ,
            **topic_environment(roles),
            "FRAUD_KAFKA_BOOTSTRAP": broker.bootstrap,
            "FRAUD_REGISTRY_DIR": str(workdir / "registry"),
            "FRAUD_PARTITIONS": str(PARTITIONS),
            "FRAUD_APP_ID": f"demo-{os.getpid()}",
            "FRAUD_BATCH_WINDOW_MS": "100",
            "FRAUD_METRICS_PORT": "0",
            **CANARY,
        }

        def start(name: str, *command: str) -> None:
            log = (workdir / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                    [sys.executable, "-m", "fraudstream.cli", *command],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        start("worker", "worker")
        console.print(f"3/5 replaying {n_history:,} transactions of history at full speed ...")
        replay(read_recording(known_labels, False), "labels", config, Pacer(), linger_ms=100)
        replay(read_recording(history, False), "transactions", config, Pacer(), linger_ms=100)
        # Live: transactions and the labels reported meanwhile, both at the same event-time pace.
        speed = (epoch_ms(day_start(DAYS)) - live_start) / 1000.0 / (n_live / rate)
        feeds = [
            threading.Thread(
                target=replay,
                kwargs={
                    "records": read_recording(path, False),
                    "topic": topic,
                    "client_config": config,
                    "pacer": Pacer(speed=speed),
                    "linger_ms": 100,
                    "should_stop": stop.is_set,
                },
                daemon=True,
            )
            for path, topic in ((live, "transactions"), (live_labels, "labels"))
        ]

        def go_live() -> None:
            console.print(
                f"4/5 history scored: the retrain service starts (drift events are waiting); "
                f"live traffic at ~{rate:.0f} tx/s for {live_minutes:g} min "
                f"({n_live:,} transactions available); Ctrl-C stops early"
            )
            start("retrain", "retrain", *RETRAIN)
            for feed in feeds:
                feed.start()

        _watch(console, config, is_fraud, live_start, n_history, go_live, live_minutes, stop)
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        stop.set()
        console.print("5/5 stopping the worker, the retrain service and the broker ...")
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        broker.stop()
        console.print(
            f"models: {workdir / 'registry'} (offline commands: --registry {workdir / 'registry'})"
        )
        console.rule(f"stopped; files, worker.log and retrain.log under {workdir}")


@dataclass
class _View:
    """What the live view shows, updated from the score, drift and model-update topics."""

    n_history: int
    live_start_ms: int
    scored: int = 0
    frauds: int = 0
    caught: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    live_versions: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=20000))
    live_seen: set[str] = field(default_factory=set)
    drift: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    live_began: float | None = None

    def score(self, score: dict[str, Any], is_fraud: dict[str, bool]) -> None:
        self.scored += 1
        self.arrivals.append(time.monotonic())
        self.latencies.append(score["latency_ms"])
        self.versions[score["model_version"]] += 1
        when = epoch_ms(datetime.fromisoformat(score["event_time"]))
        if when >= self.live_start_ms and score["transaction_id"] not in self.live_seen:
            self.live_seen.add(score["transaction_id"])
            self.decisions[score["decision"]] += 1
            self.live_versions[score["model_version"]] += 1
            if is_fraud.get(score["transaction_id"]):
                self.frauds += 1
                self.caught += score["decision"] != "approve"


def _watch(
    console: Console,
    config: dict[str, str],
    is_fraud: dict[str, bool],
    live_start_ms: int,
    n_history: int,
    go_live: Callable[[], None],
    live_minutes: float,
    stop: threading.Event,
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "demo-view", "fetch.wait.max.ms": 20})
    consumer.assign(
        [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in ("fraud-scores", "drift-events", "model-updates")
            for p in range(PARTITIONS)
        ]
    )
    view = _View(n_history, live_start_ms)
    try:
        with _display(console) as show:
            while True:
                for message in consumer.consume(1000, timeout=0.25):
                    if message.error():
                        continue
                    event = json.loads(message.value() or b"{}")
                    if message.topic() == "fraud-scores":
                        view.score(event, is_fraud)
                    elif message.topic() == "drift-events":
                        when = event["detected_at"][5:16].replace("T", " ")
                        view.drift.append(f"{event['signal']} ({event['model_version']}, {when})")
                    else:
                        view.updates.append(_update_text(event))
                if view.live_began is None and view.scored >= n_history:
                    view.live_began = time.monotonic()
                    go_live()
                show(view)
                if (
                    view.live_began is not None
                    and time.monotonic() - view.live_began > live_minutes * 60
                ):
                    break
    finally:
        stop.set()
        consumer.close()


PLAIN_PROGRESS_EVERY_S = 10.0
"""How often the demo prints a progress line when standard output is not a terminal."""


def _update_text(event: dict[str, Any]) -> str:
    """A ModelUpdate as one short line of the view (a canary step says its share)."""
    plan = event.get("canary") or {}
    if event.get("action") == "canary" and plan:
        return f"canary {event['version']} {plan['share']:g} %"
    return f"{event['action']} {event['version']}"


@contextmanager
def _display(console: Console) -> Iterator[Callable[[_View], None]]:
    """The live table on a terminal; plain progress lines for pipes and CI logs, where a live
    view would show nothing until the end."""
    if not console.is_terminal:
        yield PlainProgress(console)
        return
    with Live(console=console, refresh_per_second=4) as live:
        yield lambda view: live.update(_table(view))


class PlainProgress:
    """Prints the view as one line at most every `every_s` seconds (the first call at once)."""

    def __init__(
        self,
        console: Console,
        every_s: float = PLAIN_PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None

    def __call__(self, view: _View) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return
        self._last = now
        line = " | ".join(f"{name}: {value}" for name, value in _rows(view))
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _table(view: _View) -> Table:
    table = Table(title="fraudstream — live", show_header=False, min_width=60)
    for name, value in _rows(view):
        table.add_row(name, value)
    return table


def _rows(view: _View) -> list[tuple[str, str]]:
    """What the view shows, as (name, value) rows."""
    now = time.monotonic()
    recent = sum(1 for t in view.arrivals if now - t <= 5.0) / 5.0
    ordered = sorted(view.latencies)

    def pct(q: float) -> str:
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f} ms" if ordered else "-"

    total = sum(view.decisions.values()) or 1
    phase = (
        "history replay" if view.live_began is None else f"live for {now - view.live_began:.0f} s"
    )
    return [
        ("phase", f"{phase} (running {now - view.began:.0f} s)"),
        (
            "scored",
            f"{view.scored:,} ({min(view.scored, view.n_history):,} of {view.n_history:,} history)",
        ),
        ("throughput", f"{recent:,.0f} scores/s (last 5 s)"),
        ("latency p50 / p99", f"{pct(0.5)} / {pct(0.99)} (worker, last 2,000)"),
        (
            "decisions (live)",
            "  ".join(
                f"{d} {view.decisions[d] / total:.1%}" for d in ("approve", "review", "decline")
            ),
        ),
        ("frauds caught (live)", f"{view.caught} of {view.frauds}"),
        (
            "drift events",
            f"{len(view.drift)}" + (f", last: {view.drift[-1]}" if view.drift else ""),
        ),
        ("model updates", ", ".join(view.updates[-4:]) or "none yet"),
        ("scored by", ", ".join(f"{v} ({n:,})" for v, n in sorted(view.versions.items()))),
        (
            "live scored by",
            ", ".join(f"{v} ({n:,})" for v, n in sorted(view.live_versions.items())) or "-",
        ),
    ]

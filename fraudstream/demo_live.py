"""`fraudstream demo`: the streaming system end to end on the embedded broker, with a live view.

1. simulate 46 days of card traffic; train the first model on the weeks before day 42;
2. start the embedded broker (free port) and a scoring worker;
3. replay 30 days of history at full speed (fills user windows and merchant snapshots);
4. stream the last days live at a steady rate while a terminal view shows throughput,
   latency, decision mix, frauds caught and the model version;
5. stop everything it started after `live_minutes` or on Ctrl-C.

Sized for the embedded broker's limits (DESIGN.md: fetch cost grows with stored batches per
partition): the history goes in a handful of large batches, and in the live phase producer and
worker batch every 100 ms, so about 10 batches a second reach each topic — a 3-minute live
phase stays near 1,000 batches per partition, far below where Tansu slows down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream.broker import EmbeddedBroker
from fraudstream.demo import day_start, simulate_and_train
from fraudstream.topics import create_topics
from producers.replay import Pacer, read_recording, replay
from schemas.events import epoch_ms

DAYS = 46
LIVE_FROM_DAY = 42
HISTORY_DAYS = 30
PARTITIONS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    data = simulate_and_train(workdir, DAYS, LIVE_FROM_DAY)
    tx_path, label_path, version = data.transactions_file, data.labels_file, data.version
    live_start = epoch_ms(day_start(LIVE_FROM_DAY))
    history = workdir / "history.jsonl"
    live = workdir / "live.jsonl"
    known_labels = workdir / "labels_known.jsonl"
    first = epoch_ms(day_start(LIVE_FROM_DAY - HISTORY_DAYS))
    n_history = _slice(tx_path, history, first, live_start, "timestamp")
    n_live = _slice(tx_path, live, live_start, epoch_ms(day_start(DAYS)), "timestamp")
    _slice(label_path, known_labels, 0, live_start, "labeled_at")
    is_fraud = {lab.transaction_id: lab.is_fraud for lab in data.labels}
    del data

    broker = EmbeddedBroker(workdir / "broker-state", _free_port())
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        console.print(f"2/5 starting the embedded broker and a worker ({version}) ...")
        broker.start()
        config = {"bootstrap.servers": broker.bootstrap}
        topics = {
            "FRAUD_TOPIC_TRANSACTIONS": "transactions",
            "FRAUD_TOPIC_SCORES": "fraud-scores",
            "FRAUD_TOPIC_LABELS": "labels",
            "FRAUD_TOPIC_DLQ": "transactions-dlq",
        }
        create_topics(config, topics.values(), PARTITIONS)
        env = {
            **os.environ,
            **topics,
            "FRAUD_KAFKA_BOOTSTRAP": broker.bootstrap,
            "FRAUD_REGISTRY_DIR": str(workdir / "registry"),
            "FRAUD_PARTITIONS": str(PARTITIONS),
            "FRAUD_APP_ID": f"demo-{os.getpid()}",
            "FRAUD_BATCH_WINDOW_MS": "100",
        }
        log = (workdir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "fraudstream.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.print(f"3/5 replaying {n_history:,} transactions of history at full speed ...")
        replay(read_recording(known_labels, False), "labels", config, Pacer(), linger_ms=100)
        replay(read_recording(history, False), "transactions", config, Pacer(), linger_ms=100)
        console.print(
            f"4/5 live traffic at {rate:.0f} tx/s for {live_minutes:g} min "
            f"({n_live:,} transactions available); Ctrl-C stops early"
        )
        producer = threading.Thread(
            target=replay,
            kwargs={
                "records": read_recording(live, False),
                "topic": "transactions",
                "client_config": config,
                "pacer": Pacer(rate=rate),
                "linger_ms": 100,
                "should_stop": stop.is_set,
            },
            daemon=True,
        )
        _watch(console, config, is_fraud, live_start, n_history, producer, live_minutes, stop)
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        stop.set()
        console.print("5/5 stopping the worker and the broker ...")
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        broker.stop()
        console.rule(f"stopped; files and worker.log under {workdir}")


def _watch(
    console: Console,
    config: dict[str, str],
    is_fraud: dict[str, bool],
    live_start_ms: int,
    n_history: int,
    producer: threading.Thread,
    live_minutes: float,
    stop: threading.Event,
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "demo-view", "fetch.wait.max.ms": 20})
    consumer.assign(
        [TopicPartition("fraud-scores", p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
    )
    scored = 0
    live_seen: set[str] = set()
    decisions: Counter[str] = Counter()
    frauds = caught = 0
    latencies: deque[float] = deque(maxlen=2000)
    arrivals: deque[float] = deque(maxlen=20000)
    versions: Counter[str] = Counter()
    began = time.monotonic()
    live_began: float | None = None
    try:
        with Live(console=console, refresh_per_second=4) as view:
            while True:
                for message in consumer.consume(1000, timeout=0.25):
                    if message.error():
                        continue
                    score = json.loads(message.value() or b"{}")
                    scored += 1
                    now = time.monotonic()
                    arrivals.append(now)
                    latencies.append(score["latency_ms"])
                    versions[score["model_version"]] += 1
                    when = epoch_ms(datetime.fromisoformat(score["event_time"]))
                    if when >= live_start_ms and score["transaction_id"] not in live_seen:
                        live_seen.add(score["transaction_id"])
                        decisions[score["decision"]] += 1
                        if is_fraud.get(score["transaction_id"]):
                            frauds += 1
                            caught += score["decision"] != "approve"
                if live_began is None and scored >= n_history:
                    live_began = time.monotonic()
                    producer.start()
                view.update(
                    _table(
                        scored,
                        n_history,
                        arrivals,
                        latencies,
                        decisions,
                        frauds,
                        caught,
                        versions,
                        began,
                        live_began,
                    )
                )
                if live_began is not None and time.monotonic() - live_began > live_minutes * 60:
                    break
    finally:
        stop.set()
        consumer.close()


def _table(
    scored: int,
    n_history: int,
    arrivals: deque[float],
    latencies: deque[float],
    decisions: Counter[str],
    frauds: int,
    caught: int,
    versions: Counter[str],
    began: float,
    live_began: float | None,
) -> Table:
    now = time.monotonic()
    recent = sum(1 for t in arrivals if now - t <= 5.0) / 5.0
    ordered = sorted(latencies)

    def pct(q: float) -> str:
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f} ms" if ordered else "-"

    total = sum(decisions.values()) or 1
    table = Table(title="fraudstream — live", show_header=False, min_width=60)
    phase = "history replay" if live_began is None else f"live for {now - live_began:.0f} s"
    table.add_row("phase", f"{phase} (running {now - began:.0f} s)")
    table.add_row("scored", f"{scored:,} ({min(scored, n_history):,} of {n_history:,} history)")
    table.add_row("throughput", f"{recent:,.0f} scores/s (last 5 s)")
    table.add_row("latency p50 / p99", f"{pct(0.5)} / {pct(0.99)} (worker, last 2,000)")
    table.add_row(
        "decisions (live)",
        "  ".join(f"{d} {decisions[d] / total:.1%}" for d in ("approve", "review", "decline")),
    )
    table.add_row("frauds caught (live)", f"{caught} of {frauds}")
    table.add_row("model", ", ".join(f"{v} ({n:,})" for v, n in versions.most_common()))
    return table

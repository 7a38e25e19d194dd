"""The learning loop on a real broker: a new fraud pattern → drift event → retrain → the gate
promotes → the running worker scores with the new version → rollback restores the old one →
the challenger shadows it.

World: 600 cards, 32 days, `card_testing` (the drift) from day 20. The champion is trained
before the drift. Phase 1 replays days 0–27 (and the labels known by then) through a worker;
the retrain service then finds the drift events and trains a challenger on the scored feature
log; phase 2 (days 28–30) must be scored by the new model without a worker restart; after
`fraudstream models rollback`, phase 3 (day 31) is scored by the old one again, with the new
one shadowing it (`fraudstream models shadow`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fraudstream.testing import Stack
from models.drift_config import HOUR_MS
from models.drift_replay import detect_offline
from models.features import FEATURE_NAMES
from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.scoring import Scorer, score_offline
from models.training import TrainingConfig, train
from producers.simulator import SimulationConfig, simulate, write_traffic
from schemas.events import DriftEvent, FraudScore, Label, ModelUpdate, Transaction, epoch_ms
from schemas.jsonl import read_events, write_events

pytestmark = pytest.mark.integration

START = date(2024, 3, 1)
DAYS, DRIFT_DAY, PHASE2_DAY, PHASE3_DAY = 32, 20, 28, 31
RETRAIN = [
    "--train-days", "12", "--gap-days", "0", "--valid-days", "2",
    "--holdout-days", "2", "--delay-days", "1", "--presume-genuine-after-days", "1",
    "--cooldown", "5s",
]  # fmt: skip


def day(n: int) -> datetime:
    return datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=n)


@dataclass(frozen=True)
class World:
    phase1: Path
    phase1_labels: Path
    phase2: Path
    phase3: Path
    is_fraud: dict[str, bool]
    registry: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("drift-world")
    traffic = simulate(
        SimulationConfig(
            customers=600,
            merchants=1200,
            days=DAYS,
            start=START,
            seed=5,
            scenarios=("all",),
            drift_day=DRIFT_DAY,
            card_tests_per_day=6.0,
        )
    )
    tx_path, label_path = write_traffic(traffic, root / "data")
    txs = read_events(tx_path, Transaction).records
    labels = read_events(label_path, Label).records
    champion = train(
        txs,
        labels,
        TrainingConfig(as_of=day(DRIFT_DAY), train_days=14, gap_days=1, valid_days=3),
    )
    store = ModelRegistry(root / "registry", "fraud-xgb")
    store.promote(store.register(champion.model_bytes, champion.metadata).version)

    def between(first: int, last: int) -> list[Transaction]:
        return [
            t for t in txs if epoch_ms(day(first)) <= epoch_ms(t.timestamp) < epoch_ms(day(last))
        ]

    cut = epoch_ms(day(PHASE2_DAY))
    known = [x for x in labels if x.labeled_at is not None and epoch_ms(x.labeled_at) < cut]
    paths = {name: root / f"{name}.jsonl" for name in ("p1", "p1_labels", "p2", "p3")}
    write_events(paths["p1"], between(0, PHASE2_DAY))
    write_events(paths["p1_labels"], known)
    write_events(paths["p2"], between(PHASE2_DAY, PHASE3_DAY))
    write_events(paths["p3"], between(PHASE3_DAY, DAYS))
    return World(
        paths["p1"],
        paths["p1_labels"],
        paths["p2"],
        paths["p3"],
        {x.transaction_id: x.is_fraud for x in labels},
        store.root,
    )


@pytest.fixture(scope="module")
def fraudstream_registry(world: World) -> Path:
    """This module's stacks score with the world's champion (a registry given to the kit)."""
    return world.registry


def test_drift_retrain_promotion_hot_swap_and_rollback(
    fraudstream_stack: Stack, world: World
) -> None:
    stack = fraudstream_stack
    stack.extra_env["FRAUD_PRODUCER_LINGER_MS"] = "50"  # fewer, larger batches on the broker
    # Phase 2 races through three days of event time in a second: a partition whose first
    # records of it come later than the idle time after another's is closed up to that one's
    # hours meanwhile, and its records are late (README, known problems). Live traffic cannot
    # outrun the clock; a replay after a pause can, so partitions wait longer before they stop
    # holding the others back.
    stack.extra_env["FRAUD_IDLE_PARTITION_S"] = "10"
    began = time.monotonic()
    mark = lambda what: print(f"{time.monotonic() - began:6.1f} s {what}")  # noqa: E731
    store = ModelRegistry(stack.registry, "fraud-xgb")  # the stack's copy of world.registry
    old_version = store.champion()
    # Phase 1: history with the new pattern from day 20, labels as known on day 28 (replayed
    # before the worker starts: it reads complete input, as offline scoring does).
    stack.replay(world.phase1_labels, "labels")
    phase1 = stack.replay(world.phase1)
    worker = stack.start_worker()
    stack.scores(phase1, timeout=240)
    mark("phase 1 scored")
    drift = [
        DriftEvent.model_validate_json(m.value())
        for m in stack.read("drift-events", lambda ms: bool(ms), 60, "a drift event")
    ]
    after = [d for d in drift if d.detected_at >= day(DRIFT_DAY)]
    assert after, f"no drift detected after the new pattern began: {drift}"
    assert all(d.model_version == old_version for d in drift)

    # The retrain service takes the drift events, trains, gates and promotes.
    mark("drift seen")
    retrain = stack.start_retrain(*RETRAIN)
    updates = [
        ModelUpdate.model_validate_json(m.value())
        for m in stack.read("model-updates", lambda ms: bool(ms), 300, "a promotion")
    ]
    assert [u.action for u in updates] == ["promote"]
    mark("promoted")
    new_version = updates[0].version
    assert new_version != old_version and store.champion() == new_version
    lineage = store.get(new_version).metadata["lineage"]
    assert lineage["parent"] == old_version and lineage["trigger"] == "drift"
    assert lineage["gate"]["passed"] is True
    runs = retrain.wait_for_metrics(
        lambda m: m.get('fraudstream_retrain_runs_total{outcome="promoted",trigger="drift"}') == 1
    )
    assert runs["fraudstream_retrain_drift_events_received_total"] >= len(drift)
    assert runs["fraudstream_retrain_last_success_timestamp_seconds"] > 0

    # Phase 2: the same worker process scores with the new champion.
    worker.wait_for_log(f"champion {old_version} -> {new_version}")
    phase2 = _scores(stack, stack.replay(world.phase2))
    mark("phase 2 scored")
    assert {s.model_version for s in phase2.values()} == {new_version}
    assert worker.running, "the worker restarted"
    # Determinism across the pause between replays: features exactly as offline.
    offline = _offline_features(world, store.load(old_version))
    differ = [t for t, x in phase2.items() if x.features != offline[t]]
    assert differ == [], _feature_differences(differ, phase2, offline, worker.scrape())
    rows = np.array([[s.features[n] for n in FEATURE_NAMES] for s in phase2.values()])
    truth = np.array([world.is_fraud.get(t, False) for t in phase2])
    old = Scorer.from_loaded(store.load(old_version)).score(rows).scores
    new = [s.score for s in phase2.values()]
    ap_old, ap_new = average_precision_score(truth, old), average_precision_score(truth, new)
    assert ap_new > ap_old + 0.05, (ap_old, ap_new)

    # Rollback: running workers return to the previous champion.
    mark(f"post-drift AP: old {ap_old:.3f}, new {ap_new:.3f} ({int(truth.sum())} frauds)")
    done = stack.cli("models", "rollback", "--reason", "test")
    assert done.returncode == 0, done.stderr
    worker.wait_for_log(f"champion {new_version} -> {old_version}")
    # ... and the challenger can keep shadowing it: scored beside, never deciding.
    done = stack.cli("models", "shadow", new_version, "--reason", "test")
    assert done.returncode == 0, done.stderr
    worker.wait_for_log(f"shadow {new_version}")
    phase3 = _scores(stack, stack.replay(world.phase3))
    mark("phase 3 scored")
    assert {s.model_version for s in phase3.values()} == {old_version}
    assert {s.shadow.model_version for s in phase3.values() if s.shadow} == {new_version}
    assert all(s.shadow is not None for s in phase3.values())
    retrain.stop()
    worker.stop()


def test_two_workers_publish_the_drift_events_one_monitor_computes_offline(
    fraudstream_stack: Stack, world: World
) -> None:
    """Phase 1 (the card-testing pattern from day 20) through two workers: the cluster's one
    monitor publishes exactly the events `detect_offline` computes from the offline scores —
    what one worker's monitor publishes too (not one set per worker, as per-worker detectors
    did)."""
    stack = fraudstream_stack
    stack.extra_env["FRAUD_PRODUCER_LINGER_MS"] = "50"
    # Score partitions silent this long after the replay are idle: the last hours close.
    stack.extra_env["FRAUD_DRIFT_SCORES_IDLE_S"] = "20"
    store = ModelRegistry(stack.registry, "fraud-xgb")
    txs = read_events(world.phase1, Transaction).records
    labels = read_events(world.phase1_labels, Label).records
    offline = score_offline(txs, Scorer.from_loaded(store.load()), attributed_frauds(labels).frauds)
    expected = sorted(map(_event_key, detect_offline(offline, labels)))
    assert any(at >= day(DRIFT_DAY) for at, *_ in expected), "the world did not drift: void"
    last_score_hour = max(epoch_ms(t.timestamp) for t in txs) // HOUR_MS
    last_label_hour = max(epoch_ms(x.labeled_at) for x in labels if x.labeled_at) // HOUR_MS

    stack.replay(world.phase1_labels, "labels")
    phase1 = stack.replay(world.phase1)
    workers = [stack.start_worker("a", wait_ready=False), stack.start_worker("b")]
    stack.scores(phase1, timeout=240)

    # Every hour but the newest closes: the newest stays open until later scores show that
    # nothing more can come for it (all partitions idle hold nobody back, and move nothing).
    stat = 'fraudstream_drift_monitor{stat="core.%s_hours_through_ms"}'
    wanted = min(last_score_hour, last_label_hour) * HOUR_MS

    def through(m: dict[str, float]) -> float:
        return min(m.get(stat % "score", -1), m.get(stat % "label", -1))

    deadline = time.monotonic() + 180
    leaders: dict[str, float] = {}
    while not leaders:
        scraped = {w.name: w.scrape() for w in workers}
        leaders = {name: through(m) for name, m in scraped.items() if through(m) >= wanted}
        assert time.monotonic() < deadline, (
            f"no monitor closed the hours through {wanted} within 180 s: "
            + repr(
                {
                    n: {k: v for k, v in m.items() if "drift_monitor" in k}
                    for n, m in scraped.items()
                }
            )
        )
        time.sleep(0.5)
    assert len(leaders) == 1, f"more than one monitor leads: {leaders}"
    (cut,) = leaders.values()
    closed = [e for e in expected if e[0] <= datetime.fromtimestamp(cut / 1000, UTC)]
    published = stack.read(
        "drift-events", lambda ms: len(ms) >= len(closed), 60, f"{len(closed)} drift events"
    )
    got = sorted(_event_key(DriftEvent.model_validate_json(m.value())) for m in published)
    for worker in workers:
        worker.stop()
    print(
        f"{len(got)} drift events from {list(leaders)}; offline {len(closed)} in the hours closed, "
        f"{len(expected)} in all"
    )
    assert got == closed
    assert any(at >= day(DRIFT_DAY) for at, *_ in got)


def _event_key(event: DriftEvent) -> tuple[Any, ...]:
    return (event.detected_at, event.detector, event.signal, event.model_version)


def _scores(stack: Stack, sent: Any) -> dict[str, FraudScore]:
    """The latest score of each transaction `sent` (a replay)."""
    scores = stack.scores(sent)
    return {t: copies[-1] for t, copies in scores.items() if t in sent.transaction_ids}


def _feature_differences(
    differ: list[str],
    streamed: dict[str, FraudScore],
    offline: dict[str, dict[str, float]],
    metrics: dict[str, float],
) -> str:
    """Which features differ, in how many of the scores, and the late-record counters: what
    tells a lateness failure (merchant features) from any other."""
    names = Counter(
        name for t in differ for name, value in streamed[t].features.items()
        if offline[t].get(name) != value
    )  # fmt: skip
    late = {k: v for k, v in metrics.items() if "late_total" in k}
    return f"{len(differ)} of {len(streamed)} scores differ: {dict(names)}; {late}"


def _offline_features(world: World, champion: Any) -> dict[str, dict[str, float]]:
    txs = (
        read_events(world.phase1, Transaction).records
        + read_events(world.phase2, Transaction).records
    )
    known = attributed_frauds(read_events(world.phase1_labels, Label).records).frauds
    return {
        s.transaction_id: s.features
        for s in score_offline(txs, Scorer.from_loaded(champion), known)
    }

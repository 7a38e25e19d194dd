"""Hot swap under load: a promotion and a rollback while traffic streams into a worker.

Every copy of every score is counted: each transaction is scored exactly once, by exactly one
version; within each partition the versions follow the swaps in order; and the worker counts
exactly the two swaps that happened.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from fraudstream.testing import Scores, Stack, read_all
from models.registry import ModelRegistry
from models.training import TrainingConfig, train
from schemas.events import ModelUpdate
from tests.conftest import SimulatedData
from tests.integration.test_worker import TRAFFIC

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

RATE = 250.0
"""Transactions per second offered: ~24 s of traffic, so both swaps land mid-stream."""


def versions_by_partition(scores: Scores) -> dict[int, list[str]]:
    """Per partition, the version of each score in offset order."""
    ordered = sorted(scores.copies, key=lambda c: (c.partition, c.offset))
    return {
        partition: [c.score.model_version for c in copies]
        for partition, copies in itertools.groupby(ordered, key=lambda c: c.partition)
    }


def test_promote_and_rollback_under_load_score_each_transaction_once_by_one_version(
    fraudstream_stack: Stack, small_dataset: SimulatedData
) -> None:
    stack = fraudstream_stack
    store = ModelRegistry(stack.registry, "fraud-xgb")
    v1 = store.champion()
    assert v1 is not None
    other = train(small_dataset.transactions, small_dataset.labels, TrainingConfig(train_days=14))
    v2 = store.register(other.model_bytes, other.metadata).version
    worker = stack.start_worker()
    fed: dict[str, Any] = {}
    feed = threading.Thread(
        target=lambda: fed.update(sent=stack.replay(TRAFFIC, rate=RATE, linger_ms=50))
    )
    feed.start()
    try:
        stack.scores(1500)
        under_load = [feed.is_alive()]
        promoted = stack.cli("models", "promote", v2, "--reason", "swap under load")
        assert promoted.returncode == 0, promoted.stderr
        worker.wait_for_log(f"champion {v1} -> {v2}")
        stack.scores(3500)
        under_load.append(feed.is_alive())
        rolled_back = stack.cli("models", "rollback", "--reason", "swap back under load")
        assert rolled_back.returncode == 0, rolled_back.stderr
        worker.wait_for_log(f"champion {v2} -> {v1}")
    finally:
        feed.join(timeout=120)
    assert not feed.is_alive() and "sent" in fed, "the replay did not finish"
    assert under_load == [True, True], "a swap happened after the traffic had stopped"
    stack.scores(fed["sent"], timeout=180)
    metrics = worker.wait_for_metrics(
        lambda m: m.get("fraudstream_transactions_scored_total", 0) >= fed["sent"].sent
    )
    worker.stop()

    scores = stack.all_scores()
    assert set(scores.single()) == fed["sent"].transaction_ids  # every one, exactly once
    assert len(scores.copies) == fed["sent"].sent
    assert set(scores.versions()) == {v1, v2}
    switches = {
        p: [v for v, _ in itertools.groupby(vs)] for p, vs in versions_by_partition(scores).items()
    }
    allowed = [[v1, v2, v1][i:j] for i in range(3) for j in range(i + 1, 4)]
    assert all(runs in allowed for runs in switches.values()), switches
    assert any(runs == [v1, v2, v1] for runs in switches.values()), switches
    assert metrics['fraudstream_model_swaps_total{outcome="applied"}'] == 2
    assert metrics['fraudstream_model_swaps_total{outcome="rejected"}'] == 0
    published = read_all(stack.broker.client_config(), stack.topics["model-updates"])
    updates = [ModelUpdate.model_validate_json(m.value()) for m in published]
    assert [(u.action, u.version) for u in updates] == [("promote", v2), ("rollback", v1)]
    log = worker.logs()
    assert log.count(f"champion {v1} -> {v2}") == 1 and log.count(f"champion {v2} -> {v1}") == 1

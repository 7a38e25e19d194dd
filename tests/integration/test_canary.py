"""Canary rollouts on a real broker: a worker scoring live traffic, the retrain service's canary
controller judging each step, the decisions on `model-updates` and in the registry.

A challenger that flags far more than the champion is rolled back at its first step, with the
breach and its numbers in the event, and `fraudstream score --rollout` reproduces every arm and
decision of that step. A challenger as good as the champion walks every step while traffic
flows and ends promoted. In both, every transaction is scored once, by one model, the one its
user's arm names at the step its score carries.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from fraudstream.testing import Scores, Stack, read_all
from fraudstream.testing.process import ServiceProcess
from models.canary import in_challenger
from models.registry import ModelRegistry
from schemas.events import FraudScore, ModelUpdate
from schemas.jsonl import read_events
from tests.integration.test_worker import TRAFFIC

pytestmark = pytest.mark.integration

RATE = 250.0
"""Transactions per second offered (~24 s of traffic): the steps move while it flows."""
MIN_DECISIONS = "40"


def register_challenger(store: ModelRegistry, review: float | None = None) -> str:
    """The champion's model again as a new version; with `review`, a lower review threshold
    (the same scores, far more flagged)."""
    champion = store.get(store.champion() or "")
    meta = {k: v for k, v in champion.metadata.items() if k not in ("version", "model_sha256")}
    if review is not None:
        meta["thresholds"] = {**meta["thresholds"], "review": review}
    model = (champion.path / "model.ubj").read_bytes()
    return store.register(model, meta).version


def updates(stack: Stack) -> list[ModelUpdate]:
    published = read_all(stack.broker.client_config(), stack.topics["model-updates"])
    return [ModelUpdate.model_validate_json(m.value()) for m in published]


def wait_for_update(stack: Stack, action: str, timeout_s: float = 120.0) -> list[ModelUpdate]:
    def done(messages: list[Any]) -> bool:
        return any(ModelUpdate.model_validate_json(m.value()).action == action for m in messages)

    stack.read("model-updates", done, timeout_s, f"a {action} on model-updates")
    return updates(stack)


def feed(stack: Stack) -> tuple[threading.Thread, dict[str, Any]]:
    fed: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: fed.update(sent=stack.replay(TRAFFIC, rate=RATE, linger_ms=50))
    )
    thread.start()
    return thread, fed


def check_each_transaction_decided_once(
    scores: Scores, sent: Any, rollout: str, shares: dict[int, float], versions: tuple[str, str]
) -> dict[str, int]:
    """One decision per transaction (copies identical), by the model its arm names; per score
    partition the steps only move forward. Returns the count of scores per phase."""
    champion, challenger = versions
    single = scores.single()
    assert set(single) == sent.transaction_ids, "a transaction was lost or scored twice"
    assert len(scores.copies) == sent.sent
    phases: dict[str, int] = {}
    for score in single.values():
        canary = score.canary
        if canary is None:
            phases["none"] = phases.get("none", 0) + 1
            continue
        assert canary.rollout == rollout and canary.share == shares[canary.step]
        arm = in_challenger(rollout, canary.share, score.user_id)
        assert canary.arm == ("challenger" if arm else "champion"), score.transaction_id
        assert score.model_version == (challenger if arm else champion), score.transaction_id
        assert canary.other is not None
        assert canary.other.model_version == (champion if arm else challenger)
        key = f"step{canary.step}:{canary.arm}"
        phases[key] = phases.get(key, 0) + 1
    ordered = sorted(scores.copies, key=lambda c: (c.partition, c.offset))
    for _, copies in itertools.groupby(ordered, key=lambda c: c.partition):
        steps = [c.score.canary.step if c.score.canary else None for c in copies]
        runs = [s for s, _ in itertools.groupby(steps)]
        numbered = [s for s in runs if s is not None]
        assert numbered == sorted(numbered), f"a partition went back a step: {runs}"
        assert None not in runs[:-1], f"a partition scored in the rollout after it ended: {runs}"
    return phases


def step_times(published: list[ModelUpdate]) -> list[str]:
    """Each decision, when it came after the previous one and why (for the run's report)."""
    lines, previous = [], None
    for update in published:
        at = update.issued_at
        took = ""
        if previous is not None and at is not None:
            took = f" +{(at - previous).total_seconds():.1f} s"
        step = update.canary.step if update.canary else "-"
        lines.append(f"{update.action} step {step}{took}: {update.reason}")
        previous = at
    return lines


class Rollout(NamedTuple):
    worker: ServiceProcess
    retrain: ServiceProcess
    rollout: str
    published: list[ModelUpdate]
    sent: Any


def roll_out(stack: Stack, challenger: str, until: str, *extra: str) -> Rollout:
    """A worker and the retrain service, a canary of `challenger` (steps 10/50/100 %), then live
    traffic until the controller publishes `until` — which must come while traffic flows."""
    worker = stack.start_worker()
    retrain = stack.start_retrain()
    started = stack.cli(
        "models", "canary", challenger, "--steps", "10,50,100", "--hold", "1s",
        "--min-decisions", MIN_DECISIONS, *extra,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    rollout = f"{challenger}-canary1"
    worker.wait_for_log(f"canary {rollout} step 0")
    thread, fed = feed(stack)
    try:
        published = wait_for_update(stack, until)
        under_load = thread.is_alive()
    finally:
        thread.join(timeout=120)
    assert "sent" in fed, "the replay did not finish"
    assert under_load, f"the {until} came after the traffic had stopped"
    print("\n".join(step_times(published)))
    return Rollout(worker, retrain, rollout, published, fed["sent"])


def test_a_challenger_that_flags_far_more_is_rolled_back_at_the_first_step(
    fraudstream_stack: Stack, tmp_path: Path
) -> None:
    stack = fraudstream_stack
    store = ModelRegistry(stack.registry, "fraud-xgb")
    champion = store.champion()
    assert champion is not None
    challenger = register_challenger(store, review=0.0)  # flags everything
    worker, retrain, rollout, published, sent = roll_out(
        stack, challenger, "canary_rollback", "--reason", "canary test"
    )
    assert [(u.action, u.canary.step if u.canary else None) for u in published] == [
        ("canary", 0),
        ("canary_rollback", 0),
    ]
    rolled_back = published[-1]
    assert rolled_back.version == challenger and rolled_back.canary is not None
    assert "step 1/3 (10 %) breached: flagged share 1.000" in rolled_back.reason
    evidence = rolled_back.metrics
    assert evidence["flagged_share_challenger"] == 1.0
    assert evidence["flagged_share_champion"] < 0.2
    assert evidence["decisions_challenger_arm"] >= int(MIN_DECISIONS)
    assert store.champion() == champion and store.canary() is None
    worker.wait_for_log(f"canary {rollout} rolled back")

    scores = stack.scores(sent, timeout=180)
    worker.stop()
    retrain.stop()
    phases = check_each_transaction_decided_once(
        stack.all_scores(), sent, rollout, {0: 10.0}, (champion, challenger)
    )
    assert phases.get("step0:challenger", 0) >= int(MIN_DECISIONS)
    assert phases.get("none", 0) > 0, "nothing scored by the champion alone after the rollback"

    shown = stack.cli("models", "show", challenger)
    assert shown.returncode == 0, shown.stderr
    decisions = json.loads(shown.stdout)["canary_decisions"]
    assert [d["action"] for d in decisions] == ["canary", "canary_rollback"]
    assert decisions[-1]["evidence"]["flagged_share_challenger"] == 1.0

    # Offline, the same rollout's step decides every transaction as the stream did in it.
    offline_file = tmp_path / "offline.jsonl"
    offline = stack.cli(
        "score", "--transactions", str(TRAFFIC), "--out", str(offline_file),
        "--rollout", rollout, "--share", "10",
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    expected = {s.transaction_id: s for s in read_events(offline_file, FraudScore).records}
    in_step = [s for s in scores.single().values() if s.canary is not None]
    assert in_step
    for online in in_step:
        again = expected[online.transaction_id]
        assert again.canary is not None and online.canary is not None
        assert (again.canary.arm, again.model_version, again.decision) == (
            online.canary.arm,
            online.model_version,
            online.decision,
        ), online.transaction_id
        assert abs(again.score - online.score) <= 1e-6


def test_a_good_challenger_walks_every_step_and_is_promoted(fraudstream_stack: Stack) -> None:
    stack = fraudstream_stack
    store = ModelRegistry(stack.registry, "fraud-xgb")
    champion = store.champion()
    assert champion is not None
    challenger = register_challenger(store)  # the same opinions: no guardrail can object
    worker, retrain, rollout, published, sent = roll_out(stack, challenger, "promote")
    assert [(u.action, u.canary.step if u.canary else None) for u in published] == [
        ("canary", 0),
        ("canary", 1),
        ("canary", 2),
        ("promote", 2),
    ]
    assert all(u.version == challenger for u in published)
    for passed in published[1:]:
        assert passed.metrics["decisions_challenger_arm"] >= int(MIN_DECISIONS)
        assert passed.metrics["ks_statistic"] == 0.0
        assert "passed after" in passed.reason
    assert store.champion() == challenger and store.canary() is None
    worker.wait_for_log(f"champion {champion} -> {challenger}")

    stack.scores(sent, timeout=180)
    metrics = worker.wait_for_metrics(
        lambda m: m.get("fraudstream_transactions_scored_total", 0) >= sent.sent
    )
    worker.stop()
    retrain.stop()
    phases = check_each_transaction_decided_once(
        stack.all_scores(), sent, rollout, {0: 10.0, 1: 50.0, 2: 100.0},
        (champion, challenger),
    )  # fmt: skip
    for step in range(3):
        assert phases.get(f"step{step}:challenger", 0) >= int(MIN_DECISIONS), phases
    assert "step2:champion" not in phases  # at 100 % the challenger decides for everyone
    arm_decisions = sum(
        v for k, v in metrics.items() if k.startswith("fraudstream_canary_decisions_total")
    )
    assert arm_decisions == sum(v for k, v in phases.items() if k != "none")

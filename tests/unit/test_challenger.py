"""Challenger training from the scored log: it adapts to a new fraud pattern and passes the gate,
a crippled one is rejected, lineage is complete, results are deterministic, thin data fails."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from models.features import FEATURE_NAMES
from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.scoring import Scorer, score_offline
from models.training import TrainingConfig, train
from producers.simulator import SCENARIO_CODES, SimulationConfig, simulate, write_traffic
from retrain.challenger import ChallengerConfig, ChallengerResult, train_challenger
from retrain.gate import GateConfig, Metrics
from retrain.service import CanaryStart, RetrainConfig, Retrainer, Scheduler, serve
from schemas.errors import DeliveryError, InputError, TrainingError
from schemas.events import FraudScore, Label, ModelUpdate, Transaction, epoch_ms
from schemas.jsonl import read_events

DAY_MS = 86_400_000

DRIFT_DAY = 28
WORLD = SimulationConfig(
    customers=500, merchants=1000, days=49, seed=3, scenarios=("all",), drift_day=DRIFT_DAY
)
"""~48k transactions; card testing (the new pattern) starts on day 28 (~37 frauds up to day 49)."""

CHAMPION_TRAINING = TrainingConfig(train_days=14, delay_days=7, gap_days=2, valid_days=4)
"""Trained as of the drift day: its data ends a week before, no card testing in it."""

FRESH = ChallengerConfig(
    train_days=14,
    gap_days=2,
    valid_days=4,
    holdout_days=4.0,
    delay_days=3.0,
    presume_genuine_after_days=3.0,
)
"""Holdout days 42-46, training days 28-42: all after the drift."""


@dataclass(frozen=True)
class DriftWorld:
    scores: list[FraudScore]
    """The champion's scored feature log of every transaction."""
    labels: list[Label]
    champion: Scorer
    champion_window_end: datetime
    drift_start_ms: int
    card_testing: frozenset[str]
    """Ids of the card-testing frauds (the pattern the champion never saw)."""


@pytest.fixture(scope="module")
def drift_world(tmp_path_factory: pytest.TempPathFactory) -> DriftWorld:
    traffic = simulate(WORLD)
    tx_file, label_file = write_traffic(traffic, tmp_path_factory.mktemp("drift-world"))
    transactions = read_events(tx_file, Transaction).records
    labels = read_events(label_file, Label).records
    drift_start = datetime.combine(WORLD.start, datetime.min.time(), UTC) + timedelta(DRIFT_DAY)
    config = dataclasses.replace(CHAMPION_TRAINING, as_of=drift_start)
    trained = train(transactions, labels, config, {"parent": None, "trigger": "manual"})
    booster = xgb.Booster()
    booster.load_model(bytearray(trained.model_bytes))
    champion = Scorer(booster, "v1", trained.thresholds)
    scores = list(score_offline(transactions, champion, attributed_frauds(labels).frauds))
    card_testing = traffic.transaction_id[traffic.scenario == SCENARIO_CODES["card_testing"]]
    return DriftWorld(
        scores=scores,
        labels=labels,
        champion=champion,
        champion_window_end=datetime.fromisoformat(trained.metadata["training_window"]["end"]),
        drift_start_ms=epoch_ms(drift_start),
        card_testing=frozenset(card_testing.tolist()),
    )


@pytest.fixture(scope="module")
def fresh(drift_world: DriftWorld) -> ChallengerResult:
    return train_challenger(
        drift_world.scores,
        drift_world.labels,
        drift_world.champion,
        FRESH,
        "drift",
        detail={"detector": "adwin", "signal": "score"},
    )


def _ms(iso: str) -> int:
    return epoch_ms(datetime.fromisoformat(iso))


def _value(metrics: Metrics, key: str) -> float:
    value = metrics[key]
    assert value is not None, key
    return float(value)


# -- the new pattern ----------------------------------------------------------------------------
def test_a_challenger_trained_after_the_drift_beats_the_champion_and_passes(
    drift_world: DriftWorld, fresh: ChallengerResult
) -> None:
    lineage = fresh.training.metadata["lineage"]
    # The champion's data ends a week before the drift; the challenger's starts with it (as_of
    # is the last transaction, late on the last day: its window starts late the day before).
    assert epoch_ms(drift_world.champion_window_end) <= drift_world.drift_start_ms - 7 * DAY_MS
    assert _ms(lineage["training_window"]["start"]) >= drift_world.drift_start_ms - DAY_MS // 24

    decision = fresh.decision
    assert decision.passed, decision.reasons
    champion, challenger = decision.champion, decision.challenger
    assert _value(challenger, "average_precision") > _value(champion, "average_precision") + 0.1
    assert _value(challenger, "expected_cost_per_tx") < _value(champion, "expected_cost_per_tx")

    # The gain comes from the new pattern: the champion lets card testing through.
    start, end = (_ms(lineage["holdout_window"][key]) for key in ("start", "end"))
    tests = [
        score
        for score in drift_world.scores
        if score.transaction_id in drift_world.card_testing
        and start <= epoch_ms(score.event_time) < end
    ]
    booster = xgb.Booster()
    booster.load_model(bytearray(fresh.training.model_bytes))
    model = Scorer(booster, "challenger", fresh.training.thresholds)
    rows = np.array([list(score.features.values()) for score in tests])
    champion_flags = sum(score.decision != "approve" for score in tests)
    challenger_flags = sum(d != "approve" for d in model.score(rows).decisions)
    assert len(tests) >= 10
    assert champion_flags <= 1
    assert challenger_flags >= champion_flags + 5


def test_lineage_records_parent_trigger_windows_counts_metrics_and_verdict(
    drift_world: DriftWorld, fresh: ChallengerResult
) -> None:
    meta = fresh.training.metadata
    lineage = meta["lineage"]
    assert lineage["parent"] == "v1"
    assert lineage["trigger"] == "drift"
    assert lineage["trigger_detail"] == {"detector": "adwin", "signal": "score"}
    assert lineage["source"] == "fraud-scores feature log"

    as_of = _ms(lineage["as_of"])
    holdout = lineage["holdout_window"]
    assert _ms(holdout["end"]) == as_of - 3 * DAY_MS
    assert _ms(holdout["start"]) == as_of - 7 * DAY_MS
    assert lineage["training_window"]["end"] == holdout["start"]
    assert meta["training_window"]["end"] == holdout["start"]  # what the trainer used
    assert meta["training_window"]["as_of"] == lineage["as_of"]
    assert _ms(lineage["training_window"]["start"]) == as_of - 21 * DAY_MS
    assert (lineage["holdout_days"], lineage["delay_days"]) == (4.0, 3.0)
    assert lineage["presume_genuine_after_days"] == 3.0

    counts = lineage["data"]
    assert counts["log"] == fresh.counts.to_dict()
    assert counts["holdout"] == fresh.holdout_counts.to_dict()
    assert counts["training"] == fresh.training_counts.to_dict()
    assert counts["log"]["records"] == len(drift_world.scores)
    assert counts["log"]["duplicates"] == 0
    # Holdout rows are 3-7 days old: genuine ones are not confirmed yet, only presumed.
    assert fresh.holdout_counts.genuine == 0
    assert fresh.holdout_counts.presumed_genuine > 1000
    assert fresh.holdout_counts.unlabelled_dropped == 0
    assert fresh.holdout_counts.frauds == fresh.decision.challenger["n_frauds"]
    assert meta["data"]["n_transactions"] == fresh.training_counts.rows

    assert lineage["holdout_metrics"] == {
        "champion": fresh.decision.champion,
        "challenger": fresh.decision.challenger,
    }
    assert lineage["gate"]["passed"] is fresh.decision.passed
    assert lineage["gate"]["reasons"] == fresh.decision.reasons
    assert lineage["gate"]["config"] == GateConfig().to_dict()
    assert meta["metrics"]["holdout"] == fresh.decision.challenger
    assert "validation" in meta["metrics"]
    json.dumps(meta)  # the registry stores it as JSON


def test_same_log_in_any_order_with_redeliveries_gives_the_same_challenger(
    drift_world: DriftWorld, fresh: ChallengerResult
) -> None:
    scores = drift_world.scores + drift_world.scores[::50]  # at-least-once repeats
    random.Random(7).shuffle(scores)  # partitions interleave differently on every read
    labels = list(drift_world.labels)
    random.Random(8).shuffle(labels)

    again = train_challenger(scores, labels, drift_world.champion, FRESH, "drift")

    assert again.training.model_bytes == fresh.training.model_bytes
    assert again.training.thresholds == fresh.training.thresholds
    assert again.decision == fresh.decision
    assert again.counts.duplicates == len(drift_world.scores[::50])
    assert again.counts.kept == fresh.counts.kept


# -- a worse challenger ---------------------------------------------------------------------------
def test_a_crippled_challenger_is_rejected_with_the_reason(drift_world: DriftWorld) -> None:
    crippled = dataclasses.replace(
        FRESH, params={"max_depth": 1, "learning_rate": 0.01}, max_rounds=20
    )
    result = train_challenger(
        drift_world.scores, drift_world.labels, drift_world.champion, crippled, "schedule"
    )
    assert not result.decision.passed
    assert any(reason.startswith("average_precision FAILED") for reason in result.decision.reasons)
    lineage = result.training.metadata["lineage"]
    assert lineage["trigger"] == "schedule"
    assert lineage["gate"] == {
        "passed": False,
        "reasons": result.decision.reasons,
        "config": GateConfig().to_dict(),
    }


# -- too little data ----------------------------------------------------------------------------
def test_too_few_frauds_in_the_holdout_is_a_training_error(drift_world: DriftWorld) -> None:
    config = dataclasses.replace(FRESH, min_holdout_frauds=100_000)
    with pytest.raises(TrainingError, match=r"holdout \[.*\) has \d+ known frauds .* 100000"):
        train_challenger(drift_world.scores, drift_world.labels, drift_world.champion, config, "x")


def test_a_holdout_without_genuine_labels_is_a_training_error(drift_world: DriftWorld) -> None:
    # No delay and no presumption: only the frauds reported so far are labelled in the holdout.
    config = dataclasses.replace(FRESH, delay_days=0.0, presume_genuine_after_days=None)
    with pytest.raises(TrainingError, match="holds only frauds"):
        train_challenger(drift_world.scores, drift_world.labels, drift_world.champion, config, "x")


def test_a_training_window_before_the_log_is_a_training_error(drift_world: DriftWorld) -> None:
    first = min(epoch_ms(score.event_time) for score in drift_world.scores)
    config = dataclasses.replace(FRESH, min_holdout_frauds=1)
    with pytest.raises(TrainingError, match=r"challenger window \[.*\): the fit part .* no label"):
        train_challenger(
            drift_world.scores,
            drift_world.labels,
            drift_world.champion,
            config,
            "x",
            as_of_ms=first + 9 * DAY_MS,
        )


def test_an_empty_log_is_a_training_error(drift_world: DriftWorld) -> None:
    with pytest.raises(TrainingError, match="log is empty"):
        train_challenger([], drift_world.labels, drift_world.champion, FRESH, "x")


# -- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"holdout_days": 0.0}, "holdout_days must be positive"),
        ({"min_holdout_frauds": 0}, "min_holdout_frauds must be >= 1"),
        ({"presume_genuine_after_days": 5.0}, r"must lie in \[0, delay_days \(3.0\)\]"),
        ({"presume_genuine_after_days": -1.0}, r"must lie in \[0, delay_days"),
        ({"train_days": 6.0}, "must be longer than gap \\+ validation"),
    ],
)
def test_config_validation(changes: dict[str, Any], message: str) -> None:
    config = dataclasses.replace(FRESH, **changes)
    with pytest.raises(InputError, match=message):
        config.validate()


def test_the_training_window_ends_where_the_holdout_starts() -> None:
    training = FRESH.training_config()
    assert training.delay_days == FRESH.delay_days + FRESH.holdout_days
    assert (training.train_days, training.gap_days, training.valid_days) == (14, 2, 4)
    assert training.costs == FRESH.costs
    assert training.as_of is None


def test_default_config_is_valid() -> None:
    ChallengerConfig().validate()


# -- the retrain service's run: registry, promotion, notification ------------------------------
class MemorySource:
    def __init__(self, scores: list[FraudScore], labels: list[Label]) -> None:
        self.data = (scores, labels)

    def load(self) -> tuple[list[FraudScore], list[Label]]:
        return self.data


def _registry_with_champion(tmp_path: Path, world: DriftWorld) -> ModelRegistry:
    store = ModelRegistry(tmp_path / "registry", "fraud-xgb")
    model = bytes(world.champion.booster.save_raw(raw_format="ubj"))
    meta = {"feature_names": list(FEATURE_NAMES), "thresholds": world.champion.thresholds.to_dict()}
    store.promote(store.register(model, meta).version)
    return store


def _retrainer(
    tmp_path: Path, world: DriftWorld, config: ChallengerConfig = FRESH, **kw: Any
) -> tuple[Retrainer, list[ModelUpdate]]:
    sent: list[ModelUpdate] = []
    store = _registry_with_champion(tmp_path, world)
    settings = RetrainConfig(store.root, store.model_name, challenger=config, **kw)
    return Retrainer(settings, MemorySource(world.scores, world.labels), sent.append), sent


def test_a_run_registers_promotes_and_announces_the_winner(
    tmp_path: Path, drift_world: DriftWorld
) -> None:
    retrainer, sent = _retrainer(tmp_path, drift_world)
    outcome = retrainer.run("drift", {"detector": "ADWIN", "signal": "fraud_miss_rate"})
    store = retrainer.registry
    assert (outcome.outcome, outcome.version, outcome.parent) == ("promoted", "v2", "v1")
    assert store.champion() == "v2" and outcome.notified
    [update] = sent
    assert (update.action, update.version, update.sha256) == (
        "promote",
        "v2",
        store.get("v2").sha256,
    )
    assert update.metrics["holdout_average_precision"] > 0
    assert store.get("v2").metadata["lineage"]["trigger_detail"]["signal"] == "fraud_miss_rate"


def test_a_rejected_challenger_is_kept_but_not_promoted(
    tmp_path: Path, drift_world: DriftWorld
) -> None:
    crippled = dataclasses.replace(
        FRESH, params={"max_depth": 1, "learning_rate": 0.01}, max_rounds=20
    )
    retrainer, sent = _retrainer(tmp_path, drift_world, crippled)
    outcome = retrainer.run("schedule")
    assert outcome.outcome == "rejected" and outcome.reasons
    assert retrainer.registry.list_versions() == ["v1", "v2"]
    assert retrainer.registry.champion() == "v1"
    assert retrainer.registry.get("v2").metadata["lineage"]["gate"]["passed"] is False
    assert sent == []


def test_a_winner_can_go_to_shadow_instead(tmp_path: Path, drift_world: DriftWorld) -> None:
    retrainer, sent = _retrainer(tmp_path, drift_world, winner="shadow")
    outcome = retrainer.run("manual")
    assert outcome.outcome == "shadowed"
    assert (retrainer.registry.champion(), retrainer.registry.shadow()) == ("v1", "v2")
    assert [u.action for u in sent] == ["shadow"]


def test_a_winner_can_start_a_canary_rollout_instead(
    tmp_path: Path, drift_world: DriftWorld
) -> None:
    rollout = CanaryStart(steps=(5.0, 25.0, 100.0), hold_s=600.0, min_decisions=100)
    retrainer, sent = _retrainer(tmp_path, drift_world, winner="canary", canary=rollout)
    outcome = retrainer.run("drift", {"detector": "ADWIN", "signal": "fraud_miss_rate"})
    store = retrainer.registry
    assert outcome.outcome == "canary" and outcome.notified
    assert store.champion() == "v1", "a canary winner is not promoted at once"
    started = store.canary()
    assert started is not None and (started.version, started.share) == ("v2", 5.0)
    [update] = sent
    assert update.action == "canary" and update.canary is not None
    assert (update.canary.rollout, update.canary.steps) == (started.rollout, [5.0, 25.0, 100.0])
    assert (update.canary.hold_s, update.canary.min_decisions) == (600.0, 100)
    # A rollout in progress holds further runs back (the next trigger waits for its end).
    ran: list[str] = []
    retrainer.run = lambda trigger, detail=None: ran.append(trigger)  # type: ignore[assignment,method-assign,misc,return-value]
    turns = iter([False, True])
    scheduler = Scheduler(every_s=None, cooldown_s=0.0, drift_attempts=1)
    scheduler.pending = "drift"
    serve(retrainer, scheduler, lambda timeout: [], lambda: next(turns))
    assert ran == []


def test_a_run_without_data_fails_cleanly(tmp_path: Path, drift_world: DriftWorld) -> None:
    retrainer, sent = _retrainer(tmp_path, drift_world)
    retrainer.source = MemorySource([], drift_world.labels)
    outcome = retrainer.run("schedule")
    assert outcome.outcome == "failed" and "empty" in outcome.reasons[0]
    assert retrainer.registry.list_versions() == ["v1"] and sent == []


def test_an_unreachable_broker_does_not_undo_the_promotion(
    tmp_path: Path, drift_world: DriftWorld
) -> None:
    retrainer, _ = _retrainer(tmp_path, drift_world)

    def down(update: ModelUpdate) -> None:
        raise DeliveryError("broker down")

    retrainer.notify = down
    outcome = retrainer.run("drift")
    assert outcome.outcome == "promoted" and not outcome.notified
    assert retrainer.registry.champion() == "v2"

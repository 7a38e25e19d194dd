"""`fraudstream demo`: the whole offline loop on a small simulated history.

simulate → train (promote) → score offline → evaluate with a report. Sized to finish in about a
minute on a 2-core machine; every step is the same code the individual commands run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from models.evaluation import evaluate, evaluation_input_from_scores
from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.report import write_report
from models.scoring import Scorer, score_offline
from models.training import TrainingConfig, TrainingResult, train
from producers.simulator import SimulationConfig, simulate, write_traffic
from schemas.events import FraudScore, Label, Transaction, epoch_ms
from schemas.jsonl import iter_events, read_events, write_events

DEMO_START = date(2018, 4, 1)
DEMO_DAYS = 60
TEST_DAYS = 14
CARD_TESTS_PER_DAY = 8.0
"""Card-testing bursts a day in the streaming demo's drift (~64 frauds a day among ~2,000)."""


@dataclass(frozen=True)
class DemoData:
    """Simulated traffic on disk and in memory, and the first model, promoted."""

    transactions_file: Path
    labels_file: Path
    transactions: list[Transaction]
    labels: list[Label]
    registry: ModelRegistry
    result: TrainingResult
    version: str


def day_start(day: int) -> datetime:
    return datetime.combine(DEMO_START, datetime.min.time(), UTC) + timedelta(days=day)


def simulate_and_train(
    workdir: Path, days: int, train_until_day: int, drift_day: int | None = None
) -> DemoData:
    """Both demos begin alike: 1,000 cards of traffic, a model trained up to a day, promoted.

    With `drift_day`, card testing (a pattern the first model never sees) starts that day.
    """
    config = SimulationConfig(customers=1000, merchants=2000, days=days, start=DEMO_START, seed=7)
    if drift_day is not None:
        config = replace(
            config,
            scenarios=("all",),
            drift_day=drift_day,
            card_tests_per_day=CARD_TESTS_PER_DAY,
        )
    traffic = simulate(config)
    tx_path, label_path = write_traffic(traffic, workdir / "data")
    transactions = read_events(tx_path, Transaction).records
    labels = read_events(label_path, Label).records
    registry = ModelRegistry(workdir / "registry", "fraud-xgb")
    result = train(transactions, labels, TrainingConfig(as_of=day_start(train_until_day)))
    version = registry.register(result.model_bytes, result.metadata)
    registry.promote(version.version, reason="demo")
    return DemoData(tx_path, label_path, transactions, labels, registry, result, version.version)


def run_offline_demo(workdir: Path, console: Console) -> None:
    began = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]fraudstream demo (offline loop)")

    console.print(
        f"1/4 simulating {DEMO_DAYS} days of card traffic and training on the weeks before "
        f"the last {TEST_DAYS} (7-day label delay) ..."
    )
    data = simulate_and_train(workdir, DEMO_DAYS, DEMO_DAYS - TEST_DAYS)
    transactions, labels, result = data.transactions, data.labels, data.result
    test_start = day_start(DEMO_DAYS - TEST_DAYS)
    frauds = sum(1 for lab in labels if lab.is_fraud)
    console.print(f"    {len(transactions):,} transactions, fraud rate {frauds / len(labels):.2%}")
    console.print("2/4 registered and promoted the first model")
    registry = data.registry
    val = result.metadata["metrics"]["validation"]
    console.print(
        f"    {data.version}: validation AUC {val['auc_roc']:.3f}, AP "
        f"{val['average_precision']:.3f}; review >= {result.thresholds.review:.3f}, "
        f"decline >= {result.thresholds.decline:.3f}"
    )

    console.print("3/4 scoring every transaction offline, in event-time order ...")
    scorer = Scorer.from_loaded(registry.load())
    scores_path = workdir / "scores.jsonl"
    write_events(scores_path, score_offline(transactions, scorer, attributed_frauds(labels).frauds))

    console.print(f"4/4 evaluating the last {TEST_DAYS} days (never seen in training) ...")
    truth = {lab.transaction_id: lab.is_fraud for lab in labels}
    scored, _ = evaluation_input_from_scores(
        iter_events(scores_path, FraudScore), truth, start_ms=epoch_ms(test_start)
    )
    costs = TrainingConfig().costs
    report = evaluate(scored, costs)
    paths = write_report(scored, report, workdir / "report", costs)
    console.print(
        f"    AUC {report.auc_roc:.3f}  AP {report.average_precision:.3f}  "
        f"card precision@100 {report.card_precision_at_k:.3f}  "
        f"cost {report.expected_cost:,.0f} vs {report.cost_no_model:,.0f} without a model"
    )
    html = next(p for p in paths if p.suffix == ".html")
    console.print(f"    report: {html}")
    console.print(
        f"    models: {registry.root} (e.g. fraudstream models list --registry {registry.root})"
    )
    console.rule(f"done in {time.perf_counter() - began:.0f} s; files under {workdir}")

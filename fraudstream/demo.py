"""`fraudstream demo`: the whole offline loop on a small simulated history.

simulate → train (promote) → score offline → evaluate with a report. Sized to finish in about a
minute on a 2-core machine; every step is the same code the individual commands run.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from models.evaluation import evaluate, evaluation_input_from_scores
from models.features import fraud_label_times
from models.registry import ModelRegistry
from models.report import write_report
from models.scoring import Scorer, score_offline
from models.training import TrainingConfig, train
from producers.simulator import SimulationConfig, simulate, write_traffic
from schemas.events import FraudScore, Label, Transaction, epoch_ms
from schemas.jsonl import iter_events, read_events, write_events

DEMO_START = date(2018, 4, 1)
DEMO_DAYS = 60
TEST_DAYS = 14


def run_offline_demo(workdir: Path, console: Console) -> None:
    began = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]fraudstream demo (offline loop)")

    console.print(f"1/4 simulating {DEMO_DAYS} days of card traffic ...")
    traffic = simulate(
        SimulationConfig(customers=1000, merchants=2000, days=DEMO_DAYS, start=DEMO_START, seed=7)
    )
    tx_path, label_path = write_traffic(traffic, workdir / "data")
    summary = traffic.summary()
    console.print(f"    {len(traffic):,} transactions, fraud rate {summary['fraud_rate']:.2%}")

    transactions = read_events(tx_path, Transaction).records
    labels = read_events(label_path, Label).records
    test_start = datetime.combine(DEMO_START, datetime.min.time(), UTC) + timedelta(
        days=DEMO_DAYS - TEST_DAYS
    )

    console.print("2/4 training on the weeks before the test period (7-day label delay) ...")
    registry = ModelRegistry(workdir / "registry", "fraud-xgb")
    result = train(transactions, labels, TrainingConfig(as_of=test_start))
    version = registry.register(result.model_bytes, result.metadata)
    registry.promote(version.version, reason="demo")
    val = result.metadata["metrics"]["validation"]
    console.print(
        f"    {version.version}: validation AUC {val['auc_roc']:.3f}, AP "
        f"{val['average_precision']:.3f}; review >= {result.thresholds.review:.3f}, "
        f"decline >= {result.thresholds.decline:.3f}"
    )

    console.print("3/4 scoring every transaction offline, in event-time order ...")
    scorer = Scorer.from_loaded(registry.load())
    scores_path = workdir / "scores.jsonl"
    write_events(scores_path, score_offline(transactions, scorer, fraud_label_times(labels)))

    console.print(f"4/4 evaluating the last {TEST_DAYS} days (never seen in training) ...")
    truth = {lab.transaction_id: lab.is_fraud for lab in labels}
    data, _ = evaluation_input_from_scores(
        iter_events(scores_path, FraudScore), truth, start_ms=epoch_ms(test_start)
    )
    costs = TrainingConfig().costs
    report = evaluate(data, costs)
    paths = write_report(data, report, workdir / "report", costs)
    console.print(
        f"    AUC {report.auc_roc:.3f}  AP {report.average_precision:.3f}  "
        f"card precision@100 {report.card_precision_at_k:.3f}  "
        f"cost {report.expected_cost:,.0f} vs {report.cost_no_model:,.0f} without a model"
    )
    html = next(p for p in paths if p.suffix == ".html")
    console.print(f"    report: {html}")
    console.rule(f"done in {time.perf_counter() - began:.0f} s; files under {workdir}")

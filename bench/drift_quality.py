"""How well the cluster's drift monitor detects drift: false alarms, detection delay, cost.

    .venv/bin/python bench/drift_quality.py                 # seeds 4-9, ~8 min on 2 idle cores
    .venv/bin/python bench/drift_quality.py --seeds 1 2 3 --cache /tmp/driftwork/cache

Per seed, with the project's own functions: simulate `--days` of the default world with every
scenario (`card_testing` from `--drift-day`), train on the weeks before `--train-until`
(`models.training.train` on labels that carry merchant and transaction time, registered and
loaded through `models.registry`), compute features in event-time order
(`models.features.FeatureBuilder`, merchant risk fed by the fraud label times, as `score_offline`
does) and score every later transaction with that booster and its thresholds. Then the scored
period goes through the cluster's monitor (`models.cluster_drift`) as its consumer would read
it: scores in `--partitions` partitions by user, labels of scored transactions in as many by
transaction id, each partition in its own order (event time; labels by `labeled_at`), partitions
interleaved as if each ran up to `--max-lag-hours` behind the others, plus noise.

* False alarms: events from the end of the data warm-up (3 days after training, or
  `--warmup-days`) to the drift start: 28 days per seed by default. That stretch is
  default-scenario traffic: the simulator draws `card_testing` from its own random stream and
  only from `drift_day`, so transactions, frauds and genuine confirmations before it are identical
  to a run without the scenario (fraud report delays are drawn alike, not identically).
* Detection delay: first event at or after the drift start minus the `labeled_at` of the first
  card-testing fraud label (negative: the data-drift signals saw it before any victim reported).
* Cost: wall time in the monitor's core per score and per label read (the runner's JSON parsing
  not included), measured in the worker process (other load on the machine inflates it).

Also checked: the partitioned, interleaved replay gives the same events as one partition read in
time order, and on the first seed `detect_offline` on `FraudScore`/`Label` records gives them too.
`bench/drift_demo_world.py` checks the world of `make demo` the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from the repository
    sys.path.insert(0, str(ROOT))

from models.drift_config import MISS_SIGNAL, DriftConfig  # noqa: E402
from models.drift_records import LabelInput, ScoreHour, ScoreInput  # noqa: E402
from models.drift_replay import by_time, detect_offline, lagged, replay_offline  # noqa: E402
from models.drift_signals import shape  # noqa: E402
from models.features import FEATURE_NAMES, FeatureBuilder  # noqa: E402
from models.feedback import Scored as JoinScored  # noqa: E402
from models.fraud_labels import FraudLabel  # noqa: E402
from models.registry import ModelRegistry  # noqa: E402
from models.scoring import Scorer  # noqa: E402
from models.training import TrainingConfig, train  # noqa: E402
from producers.simulator import SCENARIO_CODES, SimulationConfig, simulate  # noqa: E402
from schemas.events import (  # noqa: E402
    DriftEvent,
    FraudScore,
    Label,
    Transaction,
    epoch_ms,
    from_epoch_ms,
)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
LATENESS_MS = 600_000
CARD_TESTING = SCENARIO_CODES["card_testing"]
CACHE_FORMAT = "v2"


@dataclass(frozen=True)
class Setup:
    seed: int
    customers: int
    merchants: int
    days: int
    drift_day: int
    train_until: int
    warmup_days: float
    partitions: int
    max_lag_hours: float


@dataclass(frozen=True)
class Scored:
    """The scored period of one seed as columns (rows in event-time order)."""

    transaction_id: np.ndarray
    user_id: np.ndarray
    event_ms: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    features: np.ndarray
    labeled_ms: np.ndarray
    is_fraud: np.ndarray
    scenario: np.ndarray
    as_of_ms: int
    drift_ms: int
    model_version: str
    prepare_s: float


def _labels(traffic: Any, rows: np.ndarray) -> list[Label]:
    """Labels as a fraud-operations feed sends them: with merchant and transaction time."""
    ids, merchants = traffic.transaction_id, traffic.merchant_id
    return [
        Label.model_construct(
            transaction_id=str(ids[i]),
            is_fraud=bool(traffic.is_fraud[i]),
            labeled_at=from_epoch_ms(int(traffic.labeled_at_s[i]) * 1000),
            merchant_id=str(merchants[i]),
            transaction_time=from_epoch_ms(int(traffic.timestamp_s[i]) * 1000),
        )
        for i in rows.tolist()
    ]


def prepare(setup: Setup, cache: Path | None) -> Scored:
    """Simulate, train, register, load and score one seed (or read it from the cache)."""
    path = None
    if cache is not None:
        key = f"{CACHE_FORMAT}_s{setup.seed}_c{setup.customers}_m{setup.merchants}_d{setup.days}"
        path = cache / f"{key}_drift{setup.drift_day}_t{setup.train_until}.npz"
        if path.exists():
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
            meta = json.loads(str(arrays.pop("meta")))
            return Scored(**arrays, **meta)
    scored = _score_seed(setup)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: getattr(scored, k) for k in ("as_of_ms", "drift_ms", "model_version")}
        arrays = {
            k: getattr(scored, k)
            for k in scored.__dataclass_fields__
            if isinstance(getattr(scored, k), np.ndarray)
        }
        np.savez(path, meta=json.dumps({**meta, "prepare_s": scored.prepare_s}), **arrays)
    return scored


def _score_seed(setup: Setup) -> Scored:
    began = time.perf_counter()
    traffic = simulate(
        SimulationConfig(
            customers=setup.customers,
            merchants=setup.merchants,
            days=setup.days,
            seed=setup.seed,
            scenarios=("all",),
            drift_day=setup.drift_day,
        )
    )
    ids = traffic.transaction_id.tolist()
    event_ms = traffic.timestamp_s * 1000
    labeled_ms = traffic.labeled_at_s * 1000
    # Records from the simulator's own columns (what `fraudstream simulate` would write).
    transactions = [
        Transaction.model_construct(
            transaction_id=tx,
            user_id=user,
            merchant_id=merchant,
            amount=amount,
            currency="EUR",
            timestamp=from_epoch_ms(ms),
        )
        for tx, user, merchant, amount, ms in zip(
            ids,
            traffic.user_id.tolist(),
            traffic.merchant_id.tolist(),
            traffic.amount.tolist(),
            event_ms.tolist(),
            strict=True,
        )
    ]
    as_of_ms = traffic.config.start_s * 1000 + setup.train_until * DAY_MS
    first_scored = int(np.searchsorted(event_ms, as_of_ms))
    known = np.flatnonzero(labeled_ms[:first_scored] <= as_of_ms)
    scorer, version = _trained(transactions[:first_scored], _labels(traffic, known), as_of_ms)
    # Every fraud label of the file, as `fraudstream score --labels` takes them.
    frauds = [
        FraudLabel(transactions[i].merchant_id, int(event_ms[i]), int(labeled_ms[i]))
        for i in np.flatnonzero(traffic.is_fraud)
    ]
    matrix = FeatureBuilder(frauds=frauds).build(transactions).matrix[first_scored:]
    # Scorer.score without the reasons: the same booster, the same thresholds.
    import xgboost as xgb

    dmatrix = xgb.DMatrix(matrix, feature_names=list(FEATURE_NAMES))
    score = scorer.booster.predict(dmatrix).astype(np.float64)
    return Scored(
        transaction_id=traffic.transaction_id[first_scored:],
        user_id=traffic.user_id[first_scored:],
        event_ms=event_ms[first_scored:],
        score=score,
        flagged=np.array([scorer.thresholds.decide(float(s)) != "approve" for s in score]),
        features=matrix,
        labeled_ms=labeled_ms[first_scored:],
        is_fraud=traffic.is_fraud[first_scored:],
        scenario=traffic.scenario[first_scored:],
        as_of_ms=as_of_ms,
        drift_ms=traffic.config.start_s * 1000 + setup.drift_day * DAY_MS,
        model_version=version,
        prepare_s=time.perf_counter() - began,
    )


def _trained(
    transactions: list[Transaction], labels: list[Label], as_of_ms: int
) -> tuple[Scorer, str]:
    """Train, register, promote and load the first model, as `fraudstream train --promote`."""
    result = train(transactions, labels, TrainingConfig(as_of=from_epoch_ms(as_of_ms)))
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(Path(tmp), "fraud-xgb")
        version = registry.register(result.model_bytes, result.metadata).version
        registry.promote(version, reason="bench")
        return Scorer.from_loaded(registry.load()), version


def monitor_inputs(data: Scored, config: DriftConfig) -> tuple[list[ScoreInput], list[LabelInput]]:
    """What the monitor reads of each score and label (scores in event-time order, labels of
    the scored transactions by labeled_at)."""
    columns = [FEATURE_NAMES.index(name) for name, _ in config.features]
    raw = np.column_stack([data.score, data.features[:, columns]]).tolist()
    transforms = config.transforms
    version = data.model_version
    scores = [
        ScoreInput(
            transaction_id=tx,
            event_time_ms=ms,
            model_version=version,
            signals=tuple(shape(v, how) for v, how in zip(row, transforms, strict=True)),
            scored=JoinScored(ms, row[0], flagged, version),
        )
        for tx, ms, row, flagged in zip(
            data.transaction_id.tolist(),
            data.event_ms.tolist(),
            raw,
            data.flagged.tolist(),
            strict=True,
        )
    ]
    order = np.argsort(data.labeled_ms, kind="stable").tolist()
    ids, labeled, frauds = (
        data.transaction_id.tolist(),
        data.labeled_ms.tolist(),
        data.is_fraud.tolist(),
    )
    labels = [LabelInput(ids[i], bool(frauds[i]), int(labeled[i])) for i in order]
    return scores, labels


def partition(
    scores: list[ScoreInput], users: list[str], labels: list[LabelInput], parts: int
) -> tuple[list[list[ScoreInput]], list[list[LabelInput]]]:
    """Scores by user, labels by transaction id, each partition keeping its order."""
    by_score: list[list[ScoreInput]] = [[] for _ in range(parts)]
    for score, user in zip(scores, users, strict=True):
        by_score[zlib.crc32(user.encode()) % parts].append(score)
    by_label: list[list[LabelInput]] = [[] for _ in range(parts)]
    for label in labels:
        by_label[zlib.crc32(label.transaction_id.encode()) % parts].append(label)
    return by_score, by_label


def sides(events: list[DriftEvent]) -> tuple[list[DriftEvent], list[DriftEvent]]:
    """(data events, concept events), each in its own order."""
    return (
        [e for e in events if e.signal != MISS_SIGNAL],
        [e for e in events if e.signal == MISS_SIGNAL],
    )


def replay(
    data: Scored, setup: Setup, config: DriftConfig
) -> tuple[list[DriftEvent], dict[str, float], bool]:
    """The partitioned, interleaved replay (its events, its cost) and whether one partition read
    in time order gives the same events."""
    scores, labels = monitor_inputs(data, config)
    by_score, by_label = partition(scores, data.user_id.tolist(), labels, setup.partitions)
    rng = np.random.default_rng(setup.seed)
    lag = {
        (topic, p): int(rng.uniform(0, setup.max_lag_hours) * HOUR_MS)
        for topic in ("scores", "labels")
        for p in range(setup.partitions)
    }
    feed = lagged(by_score, by_label, lag, 5 * 60_000, setup.seed)  # type: ignore[arg-type]
    began = time.perf_counter()
    run = replay_offline(feed, setup.partitions, setup.partitions, config, LATENESS_MS)
    elapsed = time.perf_counter() - began
    reference = replay_offline(by_time([scores], [labels]), 1, 1, config, LATENESS_MS)
    hours = [r for r in run.records if isinstance(r, ScoreHour)]
    cost = {
        "us_per_record": elapsed / max(1, len(feed)) * 1e6,
        "records": float(len(feed)),
        "score_hours": float(len(hours)),
        "late_scores": run.core.statistics()["late_scores"],
    }
    events = sorted(run.events, key=lambda e: (epoch_ms(e.detected_at), e.signal))
    return events, cost, sides(run.events) == sides(reference.events)


def offline_events(data: Scored, config: DriftConfig) -> list[DriftEvent]:
    """The same period through `detect_offline` on FraudScore and Label records."""
    now = datetime.now(UTC)
    decisions = np.where(data.flagged, "review", "approve").tolist()
    scores = [
        FraudScore.model_construct(
            transaction_id=tx,
            user_id=user,
            score=score,
            decision=decision,
            model_version=data.model_version,
            reasons=[],
            features=dict(zip(FEATURE_NAMES, row, strict=True)),
            event_time=from_epoch_ms(ms),
            scored_at=now,
            latency_ms=0.0,
            late=False,
            shadow=None,
        )
        for tx, user, score, decision, row, ms in zip(
            data.transaction_id.tolist(),
            data.user_id.tolist(),
            data.score.tolist(),
            decisions,
            data.features.tolist(),
            data.event_ms.tolist(),
            strict=True,
        )
    ]
    labels = [
        Label.model_construct(transaction_id=tx, is_fraud=fraud, labeled_at=from_epoch_ms(ms))
        for tx, fraud, ms in zip(
            data.transaction_id.tolist(),
            data.is_fraud.tolist(),
            data.labeled_ms.tolist(),
            strict=True,
        )
    ]
    return detect_offline(scores, labels, config, LATENESS_MS)


def _day(ms: int, origin: int) -> float:
    return round((ms - origin) / DAY_MS, 2)


def measure(setup: Setup, data: Scored, events: list[DriftEvent]) -> dict[str, Any]:
    times = [epoch_ms(e.detected_at) for e in events]
    quiet_from = data.as_of_ms + int(setup.warmup_days * DAY_MS)
    false_alarms = [
        {"day": _day(t, data.drift_ms), "signal": e.signal, "detector": e.detector}
        for t, e in zip(times, events, strict=True)
        if quiet_from <= t < data.drift_ms
    ]
    stationary_days = (data.drift_ms - quiet_from) / DAY_MS
    first_label = int(data.labeled_ms[data.scenario == CARD_TESTING].min())
    after = [(t, e) for t, e in zip(times, events, strict=True) if t >= data.drift_ms]

    def first(kind: str) -> dict[str, Any] | None:
        for t, e in after:
            if kind == "any" or (kind == "concept") == (e.signal == MISS_SIGNAL):
                return {
                    "signal": e.signal,
                    "detector": e.detector,
                    "days_after_first_label": _day(t, first_label),
                    "days_after_drift_start": _day(t, data.drift_ms),
                }
        return None

    return {
        "seed": setup.seed,
        "scored_transactions": int(data.event_ms.shape[0]),
        "stationary_days": round(stationary_days, 2),
        "false_alarms": len(false_alarms),
        "false_alarms_per_7_days": round(len(false_alarms) / stationary_days * 7, 3),
        "false_alarm_events": false_alarms,
        "first_card_testing_label_days_after_drift_start": _day(first_label, data.drift_ms),
        "card_testing_flagged_share": round(
            float(data.flagged[data.scenario == CARD_TESTING].mean()), 3
        ),
        "fraud_miss_rate_before_drift": round(
            float(1.0 - data.flagged[data.is_fraud & (data.event_ms < data.drift_ms)].mean()), 3
        ),
        "first_detection": first("any"),
        "first_data_drift": first("data"),
        "first_concept_drift": first("concept"),
        "events_after_drift_start": [
            [_day(t, data.drift_ms), e.signal, e.detector] for t, e in after[:10]
        ],
    }


def run_seed(setup: Setup, cache: Path | None, config: DriftConfig, check: bool) -> dict[str, Any]:
    data = prepare(setup, cache)
    events, cost, same = replay(data, config=config, setup=setup)
    result = measure(setup, data, events)
    result["cost"] = {k: round(v, 3) for k, v in cost.items()}
    result["same_as_one_partition_in_time_order"] = same
    if check:
        offline = offline_events(data, config)
        result["detect_offline_matches"] = sides(offline) == sides(
            sorted(events, key=lambda e: (e.signal == MISS_SIGNAL, epoch_ms(e.detected_at)))
        )
    result["prepare_s"] = round(data.prepare_s, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6, 7, 8, 9])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--merchants", type=int, default=10000)
    parser.add_argument("--days", type=int, default=68)
    parser.add_argument("--drift-day", type=int, default=61)
    parser.add_argument("--train-until", type=int, default=30)
    parser.add_argument(
        "--warmup-days",
        type=float,
        default=None,
        help="start counting false alarms this long after training (default: the data warm-up)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="of fraud-scores and labels")
    parser.add_argument("--max-lag-hours", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="keep prepared seeds here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    config = DriftConfig()
    if args.warmup_days is None:
        args.warmup_days = config.warmup_buckets * config.bucket_ms / DAY_MS
    setups = [
        Setup(
            seed,
            args.customers,
            args.merchants,
            args.days,
            args.drift_day,
            args.train_until,
            args.warmup_days,
            args.partitions,
            args.max_lag_hours,
        )
        for seed in args.seeds
    ]
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(run_seed, setup, args.cache, config, i == 0)
            for i, setup in enumerate(setups)
        ]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - began
    if args.json:
        print(json.dumps({"config": repr(config), "results": results}, indent=2))
        return 0
    report(results, setups[0], elapsed)
    return 0


def report(results: list[dict[str, Any]], setup: Setup, elapsed: float) -> None:
    print(
        f"drift quality: {setup.customers} customers, {setup.merchants} merchants, "
        f"{setup.days} days, trained until day {setup.train_until}, card testing from day "
        f"{setup.drift_day}; warm-up {setup.warmup_days} days; {setup.partitions} partitions up "
        f"to {setup.max_lag_hours:g} h apart; {elapsed:.0f} s"
    )
    total_fa = total_days = 0.0
    for r in results:
        total_fa += r["false_alarms"]
        total_days += r["stationary_days"]
        print(
            f"\nseed {r['seed']} ({r['scored_transactions']:,} scored transactions, "
            f"prepared in {r['prepare_s']} s)"
        )
        print(
            f"  false alarms: {r['false_alarms']} in {r['stationary_days']} stationary days = "
            f"{r['false_alarms_per_7_days']:.2f} per 7 days {r['false_alarm_events']}"
        )
        print(
            f"  first card-testing label: {r['first_card_testing_label_days_after_drift_start']}"
            f" days after the drift start; card-testing frauds flagged: "
            f"{r['card_testing_flagged_share']:.1%}; miss rate of frauds before the drift: "
            f"{r['fraud_miss_rate_before_drift']:.1%}"
        )
        for kind in ("first_detection", "first_data_drift", "first_concept_drift"):
            hit = r[kind]
            text = (
                "none"
                if hit is None
                else f"{hit['detector']} on {hit['signal']}: {hit['days_after_first_label']:+.2f}"
                f" days after the first card-testing label "
                f"({hit['days_after_drift_start']:+.2f} after the drift start)"
            )
            print(f"  {kind.replace('_', ' ')}: {text}")
        after = r["events_after_drift_start"]
        print(f"  events after the drift start (day, signal, detector): {after}")
        cost = r["cost"]
        print(
            f"  cost: {cost['us_per_record']:.2f} us per record read ({cost['records']:.0f} "
            f"scores and labels, {cost['score_hours']:.0f} score hours, "
            f"{cost['late_scores']:.0f} late)"
        )
        same = r["same_as_one_partition_in_time_order"]
        checks = f"same events as one partition in time order: {same}"
        if "detect_offline_matches" in r:
            checks += f"; detect_offline gives the same events: {r['detect_offline_matches']}"
        print(f"  {checks}")
    delays = [
        r["first_detection"]["days_after_first_label"] if r["first_detection"] else float("inf")
        for r in results
    ]
    print(
        f"\nall seeds: {total_fa:.0f} false alarms in {total_days:.0f} stationary days = "
        f"{total_fa / total_days * 7:.2f} per 7 days (target <= 1); worst detection delay "
        f"{max(delays):+.2f} days after the first card-testing label (target <= 1)"
    )


if __name__ == "__main__":
    raise SystemExit(main())

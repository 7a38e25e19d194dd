"""A small scored world with a change, for the cluster drift monitor's tests (unit and broker).

Scored transactions with a daily rhythm, some frauds, labels after a delay (frauds within hours,
genuine ones a day later); from `change_day` on, cards pay more often within the hour and the
model misses most frauds (one data-drift and one concept-drift change). Partitioning copies the
system's: scores by user, labels by transaction id; within a partition, records arrive in
event-time order up to a jitter below the allowed lateness (so no record is late, whatever the
partitioning), and a few scores arrive twice (redelivery after a crash).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from models.cluster_drift import Topic
from models.drift_config import HOUR_MS, DriftConfig
from models.drift_records import LabelInput, ScoreInput
from models.drift_replay import lagged
from models.features import FEATURE_NAMES
from schemas.events import FraudScore, Label, from_epoch_ms

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
LATENESS_MS = 600_000
CONFIG = DriftConfig(warmup_buckets=24, min_bucket_count=20, label_warmup=30)
"""Short warm-ups, so that a week of small traffic has detections to compare."""
SCORED_AT = datetime(2024, 2, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    scores: tuple[FraudScore, ...]  # event-time order
    arrival_ms: tuple[int, ...]  # sort key of each score within its partition
    users: tuple[int, ...]
    labels: tuple[Label, ...]  # labeled_at order
    duplicated: frozenset[int]  # indexes of scores delivered twice

    def score_partitions(self, n: int) -> list[list[FraudScore]]:
        parts: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for i, user in enumerate(self.users):
            parts[user % n].append((self.arrival_ms[i], i))
        out: list[list[FraudScore]] = []
        for part in parts:
            rows: list[FraudScore] = []
            for _, i in sorted(part):
                rows.append(self.scores[i])
                if i in self.duplicated:
                    rows.append(self.scores[i])
            out.append(rows)
        return out

    def label_partitions(self, n: int) -> list[list[Label]]:
        parts: list[list[Label]] = [[] for _ in range(n)]
        for label in self.labels:
            parts[zlib.crc32(label.transaction_id.encode()) % n].append(label)
        return parts


def inputs(
    world: World, score_parts: int, label_parts: int, config: DriftConfig = CONFIG
) -> tuple[list[list[ScoreInput]], list[list[LabelInput]]]:
    scores = [
        [ScoreInput.from_event(s, config) for s in part]
        for part in world.score_partitions(score_parts)
    ]
    labels = [
        [lab for lab in map(LabelInput.from_event, part) if lab is not None]
        for part in world.label_partitions(label_parts)
    ]
    return scores, labels


def interleave(
    scores: list[list[ScoreInput]],
    labels: list[list[LabelInput]],
    lag_ms: dict[tuple[Topic, int], int],
    seed: int,
) -> list[tuple[Topic, int, ScoreInput | LabelInput]]:
    """All records, partitions interleaved as if (topic, p) ran `lag_ms` behind the others."""
    return lagged(scores, labels, lag_ms, 3 * HOUR_MS, seed)


def _score(i: int, t_ms: int, user: int, score: float, values: tuple[float, ...]) -> FraudScore:
    features = dict.fromkeys(FEATURE_NAMES, 1.0)
    features["amount"], features["user_tx_count_1h"], features["user_seconds_since_prev"] = values
    decision = "approve" if score < 0.5 else "review"
    return FraudScore(
        transaction_id=f"tx{i:06d}",
        user_id=f"u{user:04d}",
        score=score,
        decision=decision,
        model_version="v1",
        reasons=[],
        features=features,
        event_time=from_epoch_ms(t_ms),
        scored_at=SCORED_AT,
        latency_ms=1.0,
    )


@lru_cache(maxsize=4)
def world(days: int = 7, per_hour: int = 60, change_day: float = 4.5, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    change_ms = T0 + int(change_day * 24 * HOUR_MS)
    times: list[int] = []
    for hour in range(days * 24):
        n = int(per_hour * (0.5 + math.exp(-0.5 * ((hour % 24 - 13) / 4) ** 2)))
        times += sorted(T0 + hour * HOUR_MS + int(x) for x in rng.integers(0, HOUR_MS, n))
    scores, arrival, users, labels = [], [], [], []
    for i, t in enumerate(times):
        user = int(rng.integers(0, 400))
        fraud = rng.random() < 0.03
        after = t >= change_ms
        score = float(rng.beta(1.0, 30.0))
        if fraud:
            missed = rng.random() < (0.7 if after else 0.15)
            score = float(rng.uniform(0.01, 0.3)) if missed else float(rng.uniform(0.6, 0.99))
        since = -1.0 if rng.random() < 0.02 else float(rng.exponential(30_000))
        burst = float(rng.poisson(0.8 if after else 0.2))  # card testing: more payments an hour
        values = (float(rng.lognormal(3.5, 0.8)), 1.0 + burst, since)
        scores.append(_score(i, t, user, score, values))
        arrival.append(t + int(rng.integers(0, LATENESS_MS // 2)))
        users.append(user)
        delay = int(rng.integers(HOUR_MS, 12 * HOUR_MS)) if fraud else 24 * HOUR_MS
        labels.append((t + delay, f"tx{i:06d}", bool(fraud), t))
    labels.sort()
    duplicated = frozenset(int(i) for i in rng.choice(len(times), size=20, replace=False))
    return World(
        scores=tuple(scores),
        arrival_ms=tuple(arrival),
        users=tuple(users),
        labels=tuple(
            Label(
                transaction_id=tx,
                is_fraud=fraud,
                labeled_at=from_epoch_ms(at),
                merchant_id="m0001",
                transaction_time=from_epoch_ms(t),
            )
            for at, tx, fraud, t in labels
        ),
        duplicated=duplicated,
    )

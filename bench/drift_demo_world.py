"""The cluster's drift monitor on the world of `make demo`, offline: how many events, when.

    .venv/bin/python bench/drift_demo_world.py [--json]      # ~30 s

The demo's world (1,000 cards, 2,000 merchants, 46 days, card testing from day 36, the first
model trained up to day 42, `fraudstream.demo`): the history (from day 12) and the live days
are scored offline as the demo's worker scores them — user windows empty at the history's start,
merchant risk from the labels — and go through the monitor in the demo's two partitions (scores
by user, labels by transaction id), labels as the demo sends them (those known before the live
phase first, then the live ones). Every event is printed; the retrain service's promotion during
the live phase (a reset for the new champion) is not part of this check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from the repository
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from drift_quality import LATENESS_MS, partition  # noqa: E402

from models.drift_config import DriftConfig  # noqa: E402
from models.drift_records import LabelInput, ScoreInput  # noqa: E402
from models.drift_replay import by_time, replay_offline  # noqa: E402
from models.scoring import Scorer  # noqa: E402
from schemas.events import epoch_ms  # noqa: E402


def demo_world(partitions: int = 2) -> dict[str, Any]:
    """The `make demo` world scored offline as its worker scores it, through the monitor."""
    from fraudstream.demo import day_start, simulate_and_train
    from fraudstream.demo_live import DAYS, DRIFT_DAY, HISTORY_DAYS, LIVE_FROM_DAY
    from models.fraud_labels import attributed_frauds
    from models.scoring import score_offline

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = simulate_and_train(Path(tmp), DAYS, LIVE_FROM_DAY, drift_day=DRIFT_DAY)
        first = epoch_ms(day_start(LIVE_FROM_DAY - HISTORY_DAYS))
        end = epoch_ms(day_start(DAYS))
        streamed = [tx for tx in data.transactions if first <= epoch_ms(tx.timestamp) < end]
        scorer = Scorer.from_loaded(data.registry.load())
        scores = list(score_offline(streamed, scorer, attributed_frauds(data.labels).frauds))
        labels = [lab for lab in data.labels if lab.labeled_at and epoch_ms(lab.labeled_at) < end]
    config = DriftConfig()
    rows = [ScoreInput.from_event(s, config) for s in scores]
    users = [s.user_id for s in scores]
    timed = sorted(
        (lab for lab in map(LabelInput.from_event, labels) if lab is not None),
        key=lambda lab: lab.labeled_at_ms,
    )
    by_score, by_label = partition(rows, users, timed, partitions)
    run = replay_offline(by_time(by_score, by_label), partitions, partitions, config, LATENESS_MS)
    events = sorted(run.events, key=lambda e: (epoch_ms(e.detected_at), e.signal))
    return {
        "scored": len(scores),
        "labels": len(timed),
        "history_starts": day_start(LIVE_FROM_DAY - HISTORY_DAYS).isoformat(),
        "drift_starts": day_start(DRIFT_DAY).isoformat(),
        "live_starts": day_start(LIVE_FROM_DAY).isoformat(),
        "events": [
            [e.detected_at.isoformat(), e.detector, e.signal, e.model_version] for e in events
        ],
        "seconds": round(time.perf_counter() - began, 1),
    }


def _demo_text(result: dict[str, Any]) -> str:
    lines = [
        f"demo world: {result['scored']:,} scores, {result['labels']:,} labels; history from "
        f"{result['history_starts'][:10]}, card testing from {result['drift_starts'][:10]}, "
        f"live from {result['live_starts'][:10]} ({result['seconds']} s)",
        f"{len(result['events'])} drift events:",
    ]
    lines += [
        f"  {at[:16]}  {detector} on {signal} ({v})" for at, detector, signal, v in result["events"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = demo_world()
    print(json.dumps(result, indent=2) if args.json else _demo_text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

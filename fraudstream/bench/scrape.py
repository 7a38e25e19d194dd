"""What the worker says about itself: its Prometheus `/metrics`, scraped before and after a
phase, turned into a per-stage breakdown (microseconds per scored transaction).

The breakdown reads the worker's own counters, so it measures the worker whatever its
internals: `fraudstream_stage_seconds_total{stage}` (seconds spent per stage) divided by the
growth of `fraudstream_transactions_scored_total` over the same window. A worker that does not
export a counter gets "n/a", never a made-up figure.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "fraudstream_stage_seconds_total"
SCORED_METRIC = "fraudstream_transactions_scored_total"
LAG_METRIC = "fraudstream_consumer_lag"  # prefix: today's gauge is ..._lag_messages{partition}
STAGES = ("decode", "features", "model", "reasons", "serialise", "produce", "commit")
OVERLAPPED = frozenset({"deliver"})
"""Stages that run beside the others (the worker waits for the broker's acknowledgement of a
fetch's outputs while it scores the next fetch): shown, but not in the total."""

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def scrape(port: int, timeout_s: float = 3.0) -> Samples | None:
    """The worker's metrics on 127.0.0.1:`port`, or None when it does not answer."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return parse_metrics(answer.read().decode())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def combined(scrapes: Iterable[Samples | None]) -> Samples | None:
    """Samples summed over several workers (None if any scrape failed)."""
    total: Samples = {}
    for samples in scrapes:
        if samples is None:
            return None
        for key, value in samples.items():
            total[key] = total.get(key, 0.0) + value
    return total


def total(samples: Samples | None, name: str) -> float | None:
    """Sum of every sample called `name` (None if there is none)."""
    if samples is None:
        return None
    values = [value for (sample, _), value in samples.items() if sample == name]
    return sum(values) if values else None


def by_label(samples: Samples | None, name: str, label: str) -> dict[str, float]:
    """label value -> sample value for the samples called `name`."""
    found: dict[str, float] = {}
    for (sample, labels), value in (samples or {}).items():
        if sample == name:
            value_of = dict(labels).get(label)
            if value_of is not None:
                found[value_of] = found.get(value_of, 0.0) + value
    return found


def lag_messages(samples: Samples | None) -> float | None:
    """The worker's consumer lag summed over its partitions (None if not exported)."""
    values = [
        value
        for (sample, _), value in (samples or {}).items()
        if sample.startswith(LAG_METRIC) and not sample.endswith("_created")
    ]
    return sum(values) if values else None


def lag_partitions(samples: Samples | None) -> set[str]:
    """The partitions a worker reports lag for (the ones it owns right now)."""
    return {
        dict(labels).get("partition", "")
        for (sample, labels) in (samples or {})
        if sample.startswith(LAG_METRIC) and not sample.endswith("_created")
    } - {""}


def stage_breakdown(before: Samples | None, after: Samples | None) -> dict[str, Any]:
    """Microseconds per scored transaction for each stage between two scrapes."""
    if before is None or after is None:
        return {"available": False, "note": "n/a (the worker's /metrics did not answer)"}
    scored = _growth(total(before, SCORED_METRIC), total(after, SCORED_METRIC))
    spent_before = by_label(before, STAGE_METRIC, "stage")
    spent_after = by_label(after, STAGE_METRIC, "stage")
    if not spent_after:
        return {
            "available": False,
            "scored": scored,
            "note": f"n/a (the worker does not export {STAGE_METRIC})",
        }
    if scored is None:
        note = f"n/a ({SCORED_METRIC} not exported, or reset by a restart)"
        return {"available": False, "scored": None, "note": note}
    if scored == 0:
        return {"available": False, "scored": 0, "note": "n/a (nothing scored meanwhile)"}
    extra = sorted(set(spent_after) - set(STAGES))
    us_per_tx: dict[str, float] = {}
    for stage in (*STAGES, *extra):
        if stage in spent_after:
            spent = spent_after[stage] - spent_before.get(stage, 0.0)
            us_per_tx[stage] = round(max(0.0, spent) / scored * 1e6, 2)
    return {
        "available": True,
        "scored": scored,
        "us_per_tx": us_per_tx,
        "total_us_per_tx": round(
            sum(v for stage, v in us_per_tx.items() if stage not in OVERLAPPED), 2
        ),
        "missing_stages": [stage for stage in STAGES if stage not in spent_after],
    }


def _growth(before: float | None, after: float | None) -> int | None:
    if before is None or after is None or after < before:
        return None  # not exported, or the counter was reset (a restart)
    return round(after - before)


def scored_total(samples_by_worker: Mapping[str, Samples | None]) -> dict[str, float | None]:
    """worker name -> transactions it has scored (for how the work was shared)."""
    return {name: total(samples, SCORED_METRIC) for name, samples in samples_by_worker.items()}

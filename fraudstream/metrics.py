"""Prometheus metrics of the worker and the retrain service (prometheus-client).

Names follow Prometheus conventions: base units (`_seconds`), counters end in `_total`, and no
label takes user or transaction ids (labels are small closed sets: reason, decision, detector,
signal, role, trigger, outcome, partition). Each process has its own registry, served on
`FRAUD_METRICS_PORT` with `/metrics`, `/healthz` (alive) and `/readyz` (ready to score).
The dashboard, alert rules and a static test read the names from `METRIC_NAMES`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class WorkerMetrics:
    """Everything a scoring worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "fraudstream_transactions_consumed", "Transaction messages read.", registry=r
        )
        self.scored = Counter("fraudstream_transactions_scored", "Scores published.", registry=r)
        self.redelivered = Counter(
            "fraudstream_transactions_redelivered",
            "Transactions read again after a restart and answered from the journal.",
            registry=r,
        )
        self.late = Counter(
            "fraudstream_transactions_late",
            "Transactions later than the allowed lateness (scored, flagged, not stored).",
            registry=r,
        )
        self.dead_letters = Counter(
            "fraudstream_dead_letters", "Inputs sent to the DLQ.", ["reason"], registry=r
        )
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions published.", ["decision"], registry=r
        )
        self.score = Histogram(
            "fraudstream_score", "Fraud probability.", buckets=SCORE_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "fraudstream_end_to_end_latency_seconds",
            "From a transaction's arrival at the worker to its score being published.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fraudstream_scoring_batch_size",
            "Transactions per model call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model = Info("fraudstream_model", "Champion and shadow versions.", registry=r)
        self.model_swaps = Counter(
            "fraudstream_model_swaps",
            "Model updates obeyed or refused.",
            ["outcome"],
            registry=r,
        )
        self.drift_events = Counter(
            "fraudstream_drift_events",
            "Drift detections published.",
            ["detector", "signal"],
            registry=r,
        )
        self.labels_joined = Counter(
            "fraudstream_labels_joined", "Labels matched with their score.", registry=r
        )
        self.online_quality = Gauge(
            "fraudstream_online_quality",
            "Rolling quality over recent labelled transactions.",
            ["role", "metric"],
            registry=r,
        )
        self.lag = Gauge(
            "fraudstream_consumer_lag_messages",
            "Messages behind the high watermark, per assigned partition.",
            ["partition"],
            registry=r,
        )
        self.snapshot_waits = Counter(
            "fraudstream_merchant_snapshot_waits",
            "Batches that waited for a final merchant snapshot.",
            registry=r,
        )
        self.state = Gauge(
            "fraudstream_state_entries",
            "Entries held in the worker's in-memory state, by kind (users: live user records; "
            "merchant_history: events kept for exact rebuilds; merchant_timeline: retained "
            "merchant values; feedback_scores / feedback_labels: waiting to be joined).",
            ["kind"],
            registry=r,
        )
        # Known label values start at zero, so the first event shows up in rate().
        for reason in ("oversized", "not_utf8", "invalid_json", "invalid_event"):
            self.dead_letters.labels(reason)
        for decision in ("approve", "review", "decline"):
            self.decisions.labels(decision)
        for outcome in ("applied", "rejected"):
            self.model_swaps.labels(outcome)


class RetrainMetrics:
    """What the retrain service exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "fraudstream_retrain_runs", "Retrain runs.", ["trigger", "outcome"], registry=r
        )
        self.duration = Histogram(
            "fraudstream_retrain_duration_seconds",
            "Wall time of one retrain run.",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.last_success = Gauge(
            "fraudstream_retrain_last_success_timestamp_seconds",
            "Unix time of the last run that completed (promoted, shadowed or rejected).",
            registry=r,
        )
        self.holdout = Gauge(
            "fraudstream_retrain_holdout_metric",
            "Holdout metrics of the last run.",
            ["role", "metric"],
            registry=r,
        )
        self.drift_received = Counter(
            "fraudstream_retrain_drift_events_received",
            "Drift events taken in.",
            registry=r,
        )
        for trigger in ("drift", "schedule", "manual"):
            for outcome in ("promoted", "shadowed", "rejected", "failed"):
                self.runs.labels(trigger, outcome)


METRIC_NAMES: frozenset[str] = frozenset(
    {
        # worker (counters are exposed with _total, histograms with _bucket/_sum/_count)
        "fraudstream_transactions_consumed_total",
        "fraudstream_state_entries",
        "fraudstream_transactions_scored_total",
        "fraudstream_transactions_late_total",
        "fraudstream_transactions_redelivered_total",
        "fraudstream_dead_letters_total",
        "fraudstream_decisions_total",
        "fraudstream_score",
        "fraudstream_end_to_end_latency_seconds",
        "fraudstream_scoring_batch_size",
        "fraudstream_model_info",
        "fraudstream_model_swaps_total",
        "fraudstream_drift_events_total",
        "fraudstream_labels_joined_total",
        "fraudstream_online_quality",
        "fraudstream_consumer_lag_messages",
        "fraudstream_merchant_snapshot_waits_total",
        # retrain service
        "fraudstream_retrain_runs_total",
        "fraudstream_retrain_duration_seconds",
        "fraudstream_retrain_last_success_timestamp_seconds",
        "fraudstream_retrain_holdout_metric",
        "fraudstream_retrain_drift_events_received_total",
    }
)
"""Every exported family name (as scraped), for dashboards, alerts and their tests."""


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    ready: Callable[[], bool]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, status, kind = generate_latest(self.registry), 200, CONTENT_TYPE_LATEST
        elif path == "/healthz":
            body, status, kind = b"ok\n", 200, "text/plain"
        elif path == "/readyz":
            ok = self.ready()
            body, status, kind = (
                (b"ready\n", 200, "text/plain") if ok else (b"not ready\n", 503, "text/plain")
            )
        else:
            body, status, kind = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line."""


def serve(
    registry: CollectorRegistry,
    port: int,
    ready: Callable[[], bool],
    host: str = "0.0.0.0",  # noqa: S104
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on a daemon thread; `port` 0 picks a free one."""
    handler = type("Handler", (_Handler,), {"registry": registry, "ready": staticmethod(ready)})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server

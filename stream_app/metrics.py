"""Prometheus metrics of the scoring worker, and the HTTP endpoint every process serves.

Names follow Prometheus conventions: base units (`_seconds`), counters end in `_total`, and no
label takes user or transaction ids (labels are small closed sets: reason, decision, detector,
signal, role, stage, kind, outcome, partition). Each process has its own registry, served on
`FRAUD_METRICS_PORT` with `/metrics`, `/healthz` (alive) and `/readyz` (ready to score).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from models.stages import STAGES
from schemas.events import DeadLetterReason

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each of `values`, one increment per bucket touched.

    `Histogram.observe` walks the bucket bounds in Python and takes a lock per value: two
    histograms per score were 3 % of the worker's time. This reads prometheus_client's
    private `_upper_bounds`, `_buckets` and `_sum` (unchanged since 0.4); without them it
    falls back to `observe`. NaN goes to no bucket, as with `observe`, and is left out of the
    sum (which `observe` would turn into NaN for good).
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    kept = [v for v in values if v == v]  # NaN is the one value not equal to itself
    if not kept:
        return
    total.inc(sum(kept))
    for index, count in Tally(bisect_left(bounds, v) for v in kept).items():
        buckets[index].inc(count)


class WorkerMetrics:
    """Everything a scoring worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "fraudstream_transactions_consumed", "Transaction messages read.", registry=r
        )
        self.scored = Counter("fraudstream_transactions_scored", "Scores published.", registry=r)
        self.late = Counter(
            "fraudstream_transactions_late",
            "Transactions later than the allowed lateness (scored, flagged, not stored).",
            registry=r,
        )
        self.dead_letters = Counter(
            "fraudstream_dead_letters", "Inputs sent to the DLQ.", ["reason"], registry=r
        )
        self.dead_letters_truncated = Counter(
            "fraudstream_dead_letters_truncated",
            "Dead letters that keep only a prefix of the original bytes (with size and sha256).",
            registry=r,
        )
        self.dead_letters_dropped = Counter(
            "fraudstream_dead_letters_dropped",
            "Dead letters the DLQ refused even without the original bytes (logged, then skipped).",
            registry=r,
        )
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions published.", ["decision"], registry=r
        )
        self.canary_decisions = Counter(
            "fraudstream_canary_decisions",
            "Decisions published during a canary rollout, by the arm that decided.",
            ["arm", "decision"],
            registry=r,
        )
        self.state_resets = Counter(
            "fraudstream_user_state_resets",
            "User states that could not be read back from the table and were started afresh.",
            registry=r,
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
            "Entries held in the worker's in-memory state, by kind (users: decoded user records; "
            "merchant_entries: merchant history pairs, merchants x active hours; "
            "merchant_pending_hours: hours waiting for the slowest partition; queued: "
            "transactions waiting for a final snapshot; feedback_scores / feedback_labels: "
            "waiting to be joined).",
            ["kind"],
            registry=r,
        )
        self.stage_seconds = Counter(
            "fraudstream_stage_seconds",
            "Seconds spent per stage of the scoring path (decode, features, model, reasons, "
            "serialise, produce, commit).",
            ["stage"],
            registry=r,
        )
        self.messages_read = Counter(
            "fraudstream_messages_read",
            "Messages this worker parsed, by role (transactions and labels of its own "
            "partitions, the merchant log every worker reads).",
            ["role"],
            registry=r,
        )
        self.merchant_late = Counter(
            "fraudstream_merchant_late",
            "Transactions and labels behind their partition's closed hours: scored, not counted "
            "in merchant snapshots.",
            ["kind"],
            registry=r,
        )
        self.labels_unattributable = Counter(
            "fraudstream_labels_unattributable",
            "Fraud labels without merchant_id, transaction_time or labeled_at: not used for "
            "merchant risk.",
            registry=r,
        )
        self.replayed = Counter(
            "fraudstream_transactions_redelivered",
            "Transactions read again after a restart and answered from the journal (the "
            "identical score).",
            registry=r,
        )
        self.users_written = Counter(
            "fraudstream_user_records_written",
            "Users' table values written to the changelog (at most one per user and write-behind "
            "period, FRAUD_USERS_WRITE_BEHIND_S).",
            registry=r,
        )
        self.monitor = Gauge(
            "fraudstream_drift_monitor",
            "The cluster's drift monitor, in the worker that leads (leading 1/0; activations, "
            "inputs replayed and logged, events published; core.*: watermarks, late and "
            "unmatched records since this term began).",
            ["stat"],
            registry=r,
        )
        self.merchant_final_lag = Gauge(
            "fraudstream_merchant_final_lag_hours",
            "Event-time hours between the newest closed hour of any partition and the final "
            "boundary (how far the slowest partition holds the snapshots back).",
            registry=r,
        )
        self.idle_partitions = Gauge(
            "fraudstream_idle_partitions",
            "Owned input partitions read to their confirmed end and silent for "
            "FRAUD_IDLE_PARTITION_S, by kind (tx, labels): they hold the merchant snapshots "
            "back no longer.",
            ["kind"],
            registry=r,
        )
        for kind in ("tx", "labels"):
            self.idle_partitions.labels(kind)
        # Known label values start at zero, so the first event shows up in rate().
        for reason in get_args(DeadLetterReason):
            self.dead_letters.labels(reason)
        for decision in ("approve", "review", "decline"):
            self.decisions.labels(decision)
            for arm in ("champion", "challenger"):
                self.canary_decisions.labels(arm, decision)
        for outcome in ("applied", "rejected"):
            self.model_swaps.labels(outcome)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for kind in ("tx", "labels"):
            self.merchant_late.labels(kind)


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

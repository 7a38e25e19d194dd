"""Prometheus metrics of the retrain service, and every exported family name.

The worker's metrics live with the worker (`stream_app.metrics`); the dashboard, alert rules
and a static test read the names of both from `METRIC_NAMES`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app.metrics import WorkerMetrics, serve

__all__ = ["METRIC_NAMES", "RetrainMetrics", "WorkerMetrics", "serve"]


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
        self.canary_step = Gauge(
            "fraudstream_canary_step",
            "The canary rollout in progress: its step (from 0) and the percent of users its "
            "challenger decides for; -1 and 0 when none is.",
            ["what"],
            registry=r,
        )
        self.canary_verdicts = Counter(
            "fraudstream_canary_verdicts",
            "Canary decisions: a step passed (advance), the rollout promoted, or rolled back.",
            ["action"],
            registry=r,
        )
        self.canary_evidence = Gauge(
            "fraudstream_canary_evidence",
            "The current canary step's live evidence (flagged shares, KS, errors, latency, "
            "precision and recall per model and arm).",
            ["name"],
            registry=r,
        )
        for trigger in ("drift", "schedule", "manual"):
            for outcome in ("promoted", "shadowed", "canary", "rejected", "failed"):
                self.runs.labels(trigger, outcome)
        for action in ("advance", "promote", "rollback"):
            self.canary_verdicts.labels(action)
        self.canary_step.labels("step").set(-1)
        self.canary_step.labels("share").set(0)


METRIC_NAMES: frozenset[str] = frozenset(
    {
        # worker (counters are exposed with _total, histograms with _bucket/_sum/_count)
        "fraudstream_transactions_consumed_total",
        "fraudstream_state_entries",
        "fraudstream_transactions_scored_total",
        "fraudstream_transactions_late_total",
        "fraudstream_dead_letters_total",
        "fraudstream_dead_letters_truncated_total",
        "fraudstream_dead_letters_dropped_total",
        "fraudstream_decisions_total",
        "fraudstream_user_state_resets_total",
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
        "fraudstream_stage_seconds_total",
        "fraudstream_messages_read_total",
        "fraudstream_merchant_late_total",
        "fraudstream_labels_unattributable_total",
        "fraudstream_merchant_final_lag_hours",
        "fraudstream_idle_partitions",
        "fraudstream_transactions_redelivered_total",
        "fraudstream_user_records_written_total",
        "fraudstream_drift_monitor",
        # retrain service
        "fraudstream_retrain_runs_total",
        "fraudstream_retrain_duration_seconds",
        "fraudstream_retrain_last_success_timestamp_seconds",
        "fraudstream_retrain_holdout_metric",
        "fraudstream_retrain_drift_events_received_total",
        "fraudstream_canary_decisions_total",
        "fraudstream_canary_step",
        "fraudstream_canary_verdicts_total",
        "fraudstream_canary_evidence",
    }
)
"""Every exported family name (as scraped), for dashboards, alerts and their tests."""

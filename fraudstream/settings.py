"""The one settings object. Every value can be set from the environment with the `FRAUD_` prefix.

Only the edges (CLI, stream agents, services) read settings; the pure core takes plain arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from models.canary_guard import GuardrailConfig

ENV_PREFIX = "FRAUD_"
TOPIC_FIELDS = {
    "transactions": "topic_transactions",
    "fraud-scores": "topic_scores",
    "labels": "topic_labels",
    "transactions-dlq": "topic_dlq",
    "drift-events": "topic_drift",
    "model-updates": "topic_model_updates",
    "merchant-hours": "topic_merchant_log",
    "drift-inputs": "topic_drift_inputs",
}
"""Every topic the system uses: role (the default name, docs/CONTRACT.md) -> its setting."""
TOPIC_ROLES = tuple(TOPIC_FIELDS)


def topic_environment(names: Mapping[str, str]) -> dict[str, str]:
    """FRAUD_TOPIC_* variables pointing every role in `names` (role -> topic) at its topic."""
    return {env_var(TOPIC_FIELDS[role]): name for role, name in names.items()}


class Settings(BaseSettings):
    """Runtime configuration. `env_var(name)` gives the variable that sets a field."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    state_dir: Path = Field(
        Path(".fraudstream"), description="Local state: embedded broker pid/log, demo data."
    )
    registry_dir: Path = Field(
        Path(".fraudstream/registry"), description="Model registry directory."
    )
    model_name: str = Field("fraud-xgb", description="Name of the model in the registry.")

    # Decision costs used to choose thresholds and to report expected cost.
    cost_review: float = Field(5.0, gt=0, description="Cost of reviewing one transaction.")
    cost_missed_fraud: float = Field(100.0, gt=0, description="Cost of approving a fraud.")
    cost_false_decline: float = Field(
        50.0, gt=0, description="Cost of declining a genuine transaction."
    )

    # Kafka (used by the streaming side).
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    kafka_ssl_cafile: Path | None = Field(None, description="CA certificate file for SSL.")
    broker_port: int = Field(
        9092,
        ge=1,
        le=65535,
        description="Port of the embedded broker (`fraudstream broker`) when "
        "FRAUD_KAFKA_BOOTSTRAP is not a loopback address; otherwise it listens there.",
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions per topic when creating.")
    replication_factor: int = Field(1, ge=1, description="Replication factor when creating.")

    # Stream worker.
    app_id: str = Field("fraudstream-worker", description="Faust app id (consumer group).")
    fetch_wait_ms: int = Field(
        5, ge=0, le=5000, description="Max time a fetch waits for data (Faust's is 1500 ms)."
    )
    batch_max: int = Field(500, ge=1, description="Largest scoring micro-batch.")
    user_cache_size: int = Field(
        20_000,
        ge=1,
        description="Users whose window state a worker keeps decoded in memory (least recently "
        "seen are dropped; their state stays in the table).",
    )
    batch_window_ms: float = Field(20.0, gt=0, description="Longest wait to fill a batch.")
    max_queued: int = Field(
        4_000,
        ge=1,
        description="Decoded transactions a partition may hold waiting for their merchant "
        "snapshot before its fetching pauses (memory: ~2 KB each).",
    )
    allowed_lateness_s: float = Field(
        600.0, ge=0, description="How late (event time) a transaction may arrive and count."
    )
    idle_partition_s: float = Field(
        2.0, gt=0, description="Caught-up time after which a partition stops holding watermarks."
    )
    max_message_bytes: int = Field(
        65536, ge=1024, description="Larger transaction messages are dead-lettered."
    )
    dlq_max_message_bytes: int = Field(
        1_000_000,
        ge=8192,
        description="Largest dead-letter record; the DLQ topic's max.message.bytes, where the "
        "broker tells, lowers it. Larger originals are kept as a prefix with size and sha256.",
    )
    dedupe_horizon_s: float = Field(
        3600.0,
        gt=0,
        description="A transaction id the user's state applied within this much event time is a "
        "duplicate: dead-lettered, not counted or scored again (at least the allowed lateness).",
    )
    max_future_s: float = Field(
        86_400.0,
        gt=0,
        description="Transactions timed further ahead of the worker's clock are dead-lettered.",
    )
    commit_interval_s: float = Field(1.0, gt=0, description="Offset commit interval.")
    users_write_behind_s: float = Field(
        0.5,
        ge=0,
        le=60,
        description="How long a scored user's state may wait to be written to the table's "
        "changelog, and its offsets to be acknowledged (a user scored many times meanwhile "
        "costs one record; a crash replays that much more). 0: after every micro-batch.",
    )
    producer_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="How long the worker's producer gathers a batch (latency vs. batches).",
    )
    worker_store: str = Field("memory://", description="Faust table store (or rocksdb://).")
    drift_scores_idle_s: float = Field(
        300.0,
        gt=0,
        description="A fraud-scores partition with nothing new for this long stops holding the "
        "drift monitor's hours back (workers pause partitions while they wait).",
    )
    drift_rejoin_hours: int = Field(
        192,
        ge=0,
        description="A drift monitor that takes the lead reads fraud-scores and labels again from "
        "this many hours before the last hour its predecessor logged, so that labels of those "
        "hours still meet their scores (older scores awaiting a label are lost on failover).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Worker and retrain service logs: text, or one JSON object a line."
    )
    metrics_port: int = Field(
        9100,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz (worker, retrain); 0: any free port.",
    )

    # Canary rollouts: how a rollout proceeds, and the guardrails each step must stay within.
    canary_steps: str = Field(
        "5,25,100", description="Percents of users the challenger decides for, step by step."
    )
    canary_hold_s: float = Field(1800.0, ge=0, description="Least time each canary step lasts.")
    canary_min_decisions: int = Field(
        500,
        ge=1,
        description="Challenger decisions a canary step needs before it is judged (and passes).",
    )
    canary_max_flag_ratio: float = Field(
        1.5,
        gt=0,
        description="Canary guardrail: the challenger may flag this multiple of the champion's "
        "share on the same traffic (plus FRAUD_CANARY_FLAG_SLACK).",
    )
    canary_flag_slack: float = Field(
        0.01, ge=0, le=1, description="Canary guardrail: absolute flagged share allowed on top."
    )
    canary_max_ks: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Canary guardrail: largest KS distance between the two models' scores on the "
        "same traffic. A retrained model's calibration alone can move it far (0.79 seen for a "
        "better challenger in the demo): the default catches broken models, not recalibrated "
        "ones; lower it when the challenger is expected to keep the champion's calibration.",
    )
    canary_max_error_share: float = Field(
        0.001,
        ge=0,
        le=1,
        description="Canary guardrail: share of its arm the challenger may fail to score.",
    )
    canary_max_latency_p99_ms: float = Field(
        2500.0, gt=0, description="Canary guardrail: p99 worker latency in the challenger's arm."
    )
    canary_min_labelled_frauds: int = Field(
        20,
        ge=1,
        description="Canary guardrail: labelled frauds of the rollout before precision/recall "
        "are judged.",
    )
    canary_max_recall_drop: float = Field(
        0.10, ge=0, le=1, description="Canary guardrail: recall may drop this much."
    )
    canary_max_precision_drop: float = Field(
        0.10, ge=0, le=1, description="Canary guardrail: precision may drop this much."
    )

    # Topic names.
    topic_transactions: str = Field("transactions", description="Incoming transactions.")
    topic_scores: str = Field("fraud-scores", description="Published FraudScore events.")
    topic_labels: str = Field("labels", description="Fraud/genuine labels.")
    topic_drift: str = Field("drift-events", description="DriftEvent notifications.")
    topic_model_updates: str = Field("model-updates", description="ModelUpdate notifications.")
    topic_dlq: str = Field("transactions-dlq", description="Dead letters of bad transactions.")
    topic_merchant_log: str = Field(
        "merchant-hours",
        description="Internal: final hourly merchant partials every worker reads (retention "
        ">= 45 days, never compacted).",
    )
    topic_drift_inputs: str = Field(
        "drift-inputs",
        description="Internal: the drift monitor's log of closed hours (one partition; keep it "
        "as long as the monitor should remember).",
    )

    def canary_guardrails(self) -> GuardrailConfig:
        from models.canary_guard import GuardrailConfig

        return GuardrailConfig(
            max_flag_ratio=self.canary_max_flag_ratio,
            flag_slack=self.canary_flag_slack,
            max_ks=self.canary_max_ks,
            max_error_share=self.canary_max_error_share,
            max_latency_p99_ms=self.canary_max_latency_p99_ms,
            min_labelled_frauds=self.canary_min_labelled_frauds,
            max_recall_drop=self.canary_max_recall_drop,
            max_precision_drop=self.canary_max_precision_drop,
        )

    def allowed_lateness_ms(self) -> int:
        return round(self.allowed_lateness_s * 1000)

    def dedupe_horizon_ms(self) -> int:
        """The dedupe horizon, never shorter than the allowed lateness."""
        return round(max(self.dedupe_horizon_s, self.allowed_lateness_s) * 1000)

    def topics(self) -> dict[str, str]:
        """Role -> topic name, for every topic the system uses."""
        return {role: getattr(self, field) for role, field in TOPIC_FIELDS.items()}

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings, security included."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        return config

    def aiokafka_security(self) -> dict[str, Any]:
        """The same security settings as aiokafka keyword arguments (the worker's clients)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            from aiokafka.helpers import create_ssl_context

            cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile is not None else None
            config["ssl_context"] = create_ssl_context(cafile=cafile)
        if "SASL" in self.kafka_security_protocol:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism or "PLAIN"
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return config


def env_var(field: str) -> str:
    """The environment variable that sets `field`, for help texts."""
    return f"{ENV_PREFIX}{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

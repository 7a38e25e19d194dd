"""Creating the system's topics (idempotent) on the embedded broker or any Kafka cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fraudstream.broker import BrokerError


def create_topics(
    client_config: Mapping[str, str],
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    config: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Create each topic; returns name -> "created" | "exists". Other failures raise.

    `config` gives topic configs by name (e.g. `max.message.bytes`), applied on creation only.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(client_config))
    wanted = sorted(set(names))
    futures = admin.create_topics(
        [
            NewTopic(
                name, partitions, replication_factor, config=dict((config or {}).get(name, {}))
            )
            for name in wanted
        ],
        request_timeout=timeout_s,
        operation_timeout=timeout_s,
    )
    result: dict[str, str] = {}
    for name in wanted:
        try:
            futures[name].result(timeout=timeout_s)
            result[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise BrokerError(f"cannot create topic {name}: {error.str()}") from None
    return result


def create_system_topics(
    client_config: Mapping[str, str],
    topics: Mapping[str, str],
    partitions: int,
    replication_factor: int = 1,
) -> dict[str, str]:
    """Create the system's topics (role -> name) with what each role needs: the internal logs
    have one partition (one order for every reader); the merchant log keeps the longest merchant
    window plus the lookback, the drift monitor's inputs are kept for ever."""
    from stream_app.merchant_log import RETENTION_MS

    configs = {
        "merchant-hours": {"retention.ms": str(RETENTION_MS), "cleanup.policy": "delete"},
        "drift-inputs": {"retention.ms": "-1", "cleanup.policy": "delete"},
    }
    others = [name for role, name in topics.items() if role not in configs]
    result = create_topics(client_config, others, partitions, replication_factor)
    for role, config in configs.items():
        name = topics.get(role)
        if name is not None:
            result |= create_topics(
                client_config, [name], 1, replication_factor, config={name: config}
            )
    return result

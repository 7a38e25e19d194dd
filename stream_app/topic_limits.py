"""How large a record the dead-letter topic accepts, from settings and from the broker.

The DLQ's own `max.message.bytes` is read once at start-up where the broker answers
DescribeConfigs; the limit used is the smallest of that, the configured limit and the producer's
maximum request size, so a dead letter built for it is never refused for its size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger("fraudstream.worker.limits")


def topic_max_message_bytes(
    client_config: Mapping[str, str], topic: str, timeout_s: float = 5.0
) -> int | None:
    """The topic's `max.message.bytes`, or None when the broker does not tell (logged)."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({**client_config, "socket.connection.setup.timeout.ms": 5000})
    resource = ConfigResource("topic", topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(
            timeout=timeout_s
        )
        entry = configs.get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value else None
    except Exception as exc:  # no such topic yet, no DescribeConfigs, no answer: use settings
        log.warning("cannot read max.message.bytes of %s (%s); using the settings", topic, exc)
        return None


def dead_letter_limit(configured: int, producer_max_request: int, topic_limit: int | None) -> int:
    """The byte budget of one dead-letter record."""
    limits = [configured, producer_max_request]
    if topic_limit is not None and topic_limit > 0:
        limits.append(topic_limit)
    return min(limits)

"""Downstream example: act on fraud decisions from the `fraud-scores` topic.

    python examples/consume_scores.py            # FRAUD_KAFKA_BOOTSTRAP, FRAUD_TOPIC_SCORES

Delivery is at-least-once: after a worker crash a transaction can be scored twice, always
with the identical score. So this consumer de-duplicates by `transaction_id` (a bounded
memory of recent ids here; a real service would use its database's unique key).
"""

from __future__ import annotations

import os
import signal
from collections import OrderedDict

from confluent_kafka import Consumer

from schemas.events import FraudScore

SEEN_LIMIT = 100_000


def main() -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": os.environ.get("FRAUD_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            "group.id": "example-decision-handler",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([os.environ.get("FRAUD_TOPIC_SCORES", "fraud-scores")])
    seen: OrderedDict[str, None] = OrderedDict()
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while running:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            score = FraudScore.model_validate_json(message.value())
            if score.transaction_id in seen:
                continue  # a redelivery: same score, already handled
            seen[score.transaction_id] = None
            if len(seen) > SEEN_LIMIT:
                seen.popitem(last=False)
            if score.decision == "decline":
                why = ", ".join(f"{r.name} {r.value:+.2f}" for r in score.reasons)
                print(f"DECLINE {score.transaction_id} p={score.score:.3f} ({why})")
            elif score.decision == "review":
                print(f"review  {score.transaction_id} p={score.score:.3f} -> case queue")
    finally:
        consumer.close()


if __name__ == "__main__":
    main()

"""Which fraud labels feed the merchant risk features, and with what times.

A label is keyed by transaction id, but the merchant features need the merchant and the
transaction's event time. The stream cannot look those up without an index of every
transaction it has ever seen, so a label carries them (`merchant_id`, `transaction_time`; a
fraud-operations feed knows both) together with `labeled_at`, when the fraud became known. A
fraud label lacking any of the three is *unattributable*: it still counts for online quality and
retraining, but not for merchant risk — in the stream (counted in a metric) and offline (counted
and reported) alike, so both give the same numbers.

>>> from schemas.events import Label
>>> attribute(Label.model_validate_json('{"transaction_id": "t1", "is_fraud": false}'))
'genuine'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from schemas.events import Label, epoch_ms


@dataclass(frozen=True, slots=True)
class FraudLabel:
    """A fraud label the merchant features can use."""

    merchant_id: str
    tx_ms: int
    labeled_ms: int


def attribute(label: Label) -> FraudLabel | Literal["genuine", "unattributable"]:
    if not label.is_fraud:
        return "genuine"
    if label.merchant_id is None or label.transaction_time is None or label.labeled_at is None:
        return "unattributable"
    return FraudLabel(
        label.merchant_id, epoch_ms(label.transaction_time), epoch_ms(label.labeled_at)
    )


@dataclass
class AttributedFrauds:
    """The fraud labels of a label file that feed merchant risk, and how many could not."""

    frauds: list[FraudLabel] = field(default_factory=list)
    unattributable: int = 0


def attributed_frauds(labels: Iterable[Label]) -> AttributedFrauds:
    result = AttributedFrauds()
    for label in labels:
        found = attribute(label)
        if isinstance(found, FraudLabel):
            result.frauds.append(found)
        elif found == "unattributable":
            result.unattributable += 1
    return result

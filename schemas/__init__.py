"""Event schemas: the JSON contract of every topic, as pydantic v2 models."""

from schemas.errors import FraudstreamError, InputError, RegistryError, TrainingError
from schemas.events import (
    DECISIONS,
    DeadLetter,
    Decision,
    DriftEvent,
    Event,
    FraudScore,
    Label,
    ModelUpdate,
    Reason,
    ShadowScore,
    Transaction,
    epoch_ms,
    from_epoch_ms,
)

__all__ = [
    "DECISIONS",
    "DeadLetter",
    "Decision",
    "DriftEvent",
    "Event",
    "FraudScore",
    "FraudstreamError",
    "InputError",
    "Label",
    "ModelUpdate",
    "Reason",
    "RegistryError",
    "ShadowScore",
    "TrainingError",
    "Transaction",
    "epoch_ms",
    "from_epoch_ms",
]

"""Re-export of the exception family (defined in the leaf package `schemas`)."""

from schemas.errors import FraudstreamError, InputError, RegistryError, TrainingError

__all__ = ["FraudstreamError", "InputError", "RegistryError", "TrainingError"]

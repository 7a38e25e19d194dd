"""The root of fraudstream's own exceptions.

It lives in the leaf package so that every layer (schemas, models, stream, CLI) can raise and
catch the same family without importing upwards.
"""


class FraudstreamError(Exception):
    """Base class of every error fraudstream raises on purpose (bad input, bad state)."""


class InputError(FraudstreamError):
    """A file or record the user gave us cannot be used; the message says where and why."""


class RegistryError(FraudstreamError):
    """The model registry is missing, inconsistent, or a model failed its checksum."""


class TrainingError(FraudstreamError):
    """The data cannot produce a sound model (one class, too few frauds, empty window)."""


class DeliveryError(FraudstreamError):
    """A message could not be delivered to Kafka (broker down, topic missing, timeout)."""

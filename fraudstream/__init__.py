"""fraudstream: real-time fraud scoring on Kafka (glue: CLI, settings, embedded broker)."""

__version__ = "0.1.0"

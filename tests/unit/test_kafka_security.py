"""Kafka security settings reach every client of the worker, and the secret is never printed."""

from __future__ import annotations

import faust
from pydantic import SecretStr

from fraudstream.cli import faust_credentials, worker_config
from fraudstream.settings import Settings


def sasl_settings() -> Settings:
    return Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="scorer",
        kafka_sasl_password=SecretStr("s3cret-value"),
    )


def test_sasl_settings_reach_the_worker_clients_without_being_printed() -> None:
    settings = sasl_settings()
    config = worker_config(settings)
    assert config.kafka_security == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "scorer",
        "sasl_plain_password": "s3cret-value",
    }
    credentials = config.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.mechanism.value) == ("scorer", "SCRAM-SHA-512")
    assert "s3cret-value" not in repr(config)
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())


def test_ssl_gives_a_context_and_plaintext_gives_nothing() -> None:
    ssl = Settings(kafka_security_protocol="SSL")
    assert set(ssl.aiokafka_security()) == {"security_protocol", "ssl_context"}
    assert isinstance(faust_credentials(ssl), faust.SSLCredentials)
    plain = Settings()
    assert plain.aiokafka_security() == {} and faust_credentials(plain) is None
    assert plain.kafka_client_config()["security.protocol"] == "PLAINTEXT"

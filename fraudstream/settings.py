"""The one settings object. Every value can be set from the environment with the `FRAUD_` prefix.

Only the edges (CLI, stream agents, services) read settings; the pure core takes plain arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "FRAUD_"


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


def env_var(field: str) -> str:
    """The environment variable that sets `field`, for help texts."""
    return f"{ENV_PREFIX}{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

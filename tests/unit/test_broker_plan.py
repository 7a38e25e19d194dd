"""Where `fraudstream broker start` listens: where FRAUD_KAFKA_BOOTSTRAP points when it can."""

from __future__ import annotations

import pytest

from fraudstream.broker import BrokerError, listen_plan


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [
        ("127.0.0.1:19092", "127.0.0.1:19092"),
        ("localhost:19093", "127.0.0.1:19093"),
        ("127.0.0.2:19094", "127.0.0.2:19094"),
        ("[::1]:19095", "[::1]:19095"),
    ],
)
def test_a_loopback_bootstrap_is_where_the_broker_listens(bootstrap: str, expected: str) -> None:
    plan = listen_plan(bootstrap, 9092, bootstrap_given=True, port_given=False)
    assert (plan.bootstrap, plan.note) == (expected, None)


def test_defaults_listen_on_the_default_bootstrap_without_a_note() -> None:
    plan = listen_plan("127.0.0.1:9092", 9092, bootstrap_given=False, port_given=False)
    assert (plan.bootstrap, plan.note) == ("127.0.0.1:9092", None)


def test_a_port_of_its_own_says_how_to_point_the_other_commands_at_it() -> None:
    plan = listen_plan("127.0.0.1:9092", 19092, bootstrap_given=False, port_given=True)
    assert plan.bootstrap == "127.0.0.1:19092"
    assert plan.note is not None
    assert "export FRAUD_KAFKA_BOOTSTRAP=127.0.0.1:19092" in plan.note


@pytest.mark.parametrize(
    "bootstrap", ["kafka.example.com:9092", "10.0.0.5:9092", "127.0.0.1:1,127.0.0.1:2", "nonsense"]
)
def test_a_remote_bootstrap_gets_a_plain_note(bootstrap: str) -> None:
    plan = listen_plan(bootstrap, 19096, bootstrap_given=True, port_given=False)
    assert plan.bootstrap == "127.0.0.1:19096"
    assert plan.note is not None
    assert f"FRAUD_KAFKA_BOOTSTRAP is {bootstrap}, not a loopback address" in plan.note
    assert plan.note.endswith("export FRAUD_KAFKA_BOOTSTRAP=127.0.0.1:19096")


def test_contradicting_settings_are_an_error_not_a_guess() -> None:
    with pytest.raises(BrokerError, match="FRAUD_BROKER_PORT is 19097 but FRAUD_KAFKA_BOOTSTRAP"):
        listen_plan("127.0.0.1:19098", 19097, bootstrap_given=True, port_given=True)
    agreeing = listen_plan("127.0.0.1:19098", 19098, bootstrap_given=True, port_given=True)
    assert agreeing.bootstrap == "127.0.0.1:19098"

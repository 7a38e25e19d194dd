"""The synthetic traffic generator: file contract, determinism, scenarios, labels, geography."""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from producers.simulator import (
    DAY_S,
    DEFAULT_SCENARIOS,
    SCENARIO_CODES,
    SCENARIOS,
    SimulatedTraffic,
    SimulationConfig,
    nearby_pairs,
    resolve_scenarios,
    simulate,
    write_traffic,
)
from schemas.errors import InputError
from schemas.events import Label, Transaction

SMALL = SimulationConfig(customers=300, merchants=600, days=30, seed=7, scenarios=("all",))
MEDIUM = SimulationConfig(customers=1000, merchants=2000, days=60)
TRANSACTION_KEYS = ["transaction_id", "user_id", "merchant_id", "amount", "currency", "timestamp"]
LABEL_KEYS = ["transaction_id", "is_fraud", "labeled_at", "merchant_id", "transaction_time"]


def _days(traffic: SimulatedTraffic) -> np.ndarray:
    return (traffic.timestamp_s - traffic.config.start_s) // DAY_S


@pytest.fixture(scope="module")
def small() -> SimulatedTraffic:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def small_files(small: SimulatedTraffic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "nested" / "out"
    write_traffic(small, out)
    return out


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    small_files: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    write_traffic(simulate(SMALL), again)
    write_traffic(
        simulate(
            SimulationConfig(customers=300, merchants=600, days=30, seed=8, scenarios=("all",))
        ),
        other,
    )
    for name in ("transactions.jsonl", "labels.jsonl"):
        assert (again / name).read_bytes() == (small_files / name).read_bytes()
        assert (other / name).read_bytes() != (small_files / name).read_bytes()


def test_write_returns_paths_creates_the_directory_and_leaves_no_temp_files(
    small_files: Path,
) -> None:
    assert sorted(p.name for p in small_files.iterdir()) == ["labels.jsonl", "transactions.jsonl"]


def test_every_line_validates_and_follows_the_contract(
    small: SimulatedTraffic, small_files: Path
) -> None:
    tx_lines = (small_files / "transactions.jsonl").read_bytes().splitlines()
    label_lines = (small_files / "labels.jsonl").read_bytes().splitlines()
    assert len(tx_lines) == len(label_lines) == len(small) > 1000

    transactions = [Transaction.model_validate_json(line) for line in tx_lines]
    labels = [Label.model_validate_json(line) for line in label_lines]
    assert all(list(json.loads(line)) == TRANSACTION_KEYS for line in tx_lines)
    assert all(list(json.loads(line)) == LABEL_KEYS for line in label_lines)
    assert all(b" " not in line for line in tx_lines + label_lines)

    assert [t.transaction_id for t in transactions] == [f"tx{i:09d}" for i in range(len(small))]
    assert all(re.fullmatch(r"u\d{5}", t.user_id) for t in transactions)
    assert all(re.fullmatch(r"m\d{5}", t.merchant_id) for t in transactions)
    assert all(t.amount >= 0.01 and round(t.amount, 2) == t.amount for t in transactions)
    times = [t.timestamp for t in transactions]
    assert times == sorted(times)
    assert times[0] >= datetime.datetime(2018, 4, 1, tzinfo=datetime.UTC)
    assert times[-1] < datetime.datetime(2018, 5, 1, tzinfo=datetime.UTC)

    labeled = [label.labeled_at for label in labels if label.labeled_at is not None]
    assert len(labeled) == len(labels)
    assert labeled == sorted(labeled)
    by_id = {t.transaction_id: t for t in transactions}
    assert sorted(label.transaction_id for label in labels) == sorted(by_id)
    for label in labels:
        assert label.labeled_at is not None
        assert label.labeled_at > by_id[label.transaction_id].timestamp
    assert sum(label.is_fraud for label in labels) == int(small.is_fraud.sum()) > 0


def test_files_carry_the_columns_of_the_result(small: SimulatedTraffic, small_files: Path) -> None:
    lines = (small_files / "transactions.jsonl").read_bytes().splitlines()
    for row in (0, len(small) // 2, len(small) - 1):
        record = Transaction.model_validate_json(lines[row])
        assert record.transaction_id == small.transaction_id[row]
        assert record.user_id == small.user_id[row]
        assert record.amount == small.amount[row]
        assert record.timestamp.timestamp() == small.timestamp_s[row]


@pytest.mark.parametrize("scenarios", [DEFAULT_SCENARIOS, ("all",)])
@pytest.mark.parametrize("seed", [0, 1])
def test_fraud_rate_is_realistic(scenarios: tuple[str, ...], seed: int) -> None:
    traffic = simulate(replace(MEDIUM, seed=seed, scenarios=scenarios))
    summary = traffic.summary()
    assert summary["transactions"] == len(traffic) > 100_000
    assert 0.003 <= traffic.is_fraud.mean() <= 0.015
    assert summary["fraud_rate"] == traffic.is_fraud.mean()
    per_scenario = summary["per_scenario"]
    assert isinstance(per_scenario, dict)
    assert list(per_scenario) == list(traffic.config.scenarios)
    assert all(stats["frauds"] > 0 for stats in per_scenario.values())
    assert sum(stats["frauds"] for stats in per_scenario.values()) == summary["frauds"]


def test_large_amount_frauds_are_exactly_the_amounts_above_220() -> None:
    traffic = simulate(replace(MEDIUM, scenarios=("large_amount",)))
    assert traffic.is_fraud.sum() > 50
    np.testing.assert_array_equal(traffic.is_fraud, traffic.amount > 220)
    assert set(np.unique(traffic.scenario)) == {0, SCENARIO_CODES["large_amount"]}


def test_compromised_merchants_frauds_are_exactly_their_windows() -> None:
    traffic = simulate(replace(MEDIUM, scenarios=("compromised_merchants",)))
    incidents = traffic.world.compromised_merchants
    assert len(incidents) > 0
    compromised = {
        (int(merchant), day) for start, merchant in incidents for day in range(start, start + 28)
    }
    expected = [
        (int(m), int(d)) in compromised
        for m, d in zip(traffic.merchant_index, _days(traffic), strict=True)
    ]
    assert traffic.is_fraud.sum() > 100
    np.testing.assert_array_equal(traffic.is_fraud, np.array(expected))
    fraud_codes = traffic.scenario[traffic.is_fraud]
    assert (fraud_codes == SCENARIO_CODES["compromised_merchants"]).all()


def test_compromised_customers_multiply_a_third_of_their_spending_by_five() -> None:
    genuine = simulate(replace(MEDIUM, scenarios=()))
    traffic = simulate(replace(MEDIUM, scenarios=("compromised_customers",)))
    assert not genuine.is_fraud.any()
    # Scenarios draw from their own random streams: the genuine traffic underneath is the same.
    np.testing.assert_array_equal(traffic.timestamp_s, genuine.timestamp_s)
    np.testing.assert_array_equal(traffic.user_index, genuine.user_index)

    fraud = traffic.is_fraud
    assert (traffic.scenario[fraud] == SCENARIO_CODES["compromised_customers"]).all()
    np.testing.assert_allclose(traffic.amount[fraud], np.round(genuine.amount[fraud] * 5, 2))
    np.testing.assert_array_equal(traffic.amount[~fraud], genuine.amount[~fraud])

    windows = {
        (int(customer), day)
        for start, customer in traffic.world.compromised_customers
        for day in range(start, start + 14)
    }
    covered = np.array(
        [
            (int(u), int(d)) in windows
            for u, d in zip(traffic.user_index, _days(traffic), strict=True)
        ]
    )
    assert not (fraud & ~covered).any()
    assert 0.25 < fraud.sum() / covered.sum() < 0.42


def test_stolen_card_frauds_share_one_report_time() -> None:
    traffic = simulate(replace(MEDIUM, scenarios=("compromised_customers",)))
    incidents_per_customer = np.bincount(
        traffic.world.compromised_customers[:, 1], minlength=traffic.config.customers
    )
    fraud = np.flatnonzero(traffic.is_fraud)
    shared = 0
    for customer in np.unique(traffic.user_index[fraud]):
        rows = fraud[traffic.user_index[fraud] == customer]
        delay = traffic.labeled_at_s[rows] - traffic.timestamp_s[rows]
        reports = np.unique(traffic.labeled_at_s[rows][delay > 3600])
        assert len(reports) <= incidents_per_customer[customer]
        shared += int(len(rows) > 1 and len(reports) == 1)
    assert shared > 5


def test_card_testing_starts_at_drift_day_with_bursts_of_small_payments() -> None:
    config = SimulationConfig(
        customers=2000, merchants=2000, days=40, drift_day=25, scenarios=("card_testing",)
    )
    traffic = simulate(config)
    days = _days(traffic)
    fraud = traffic.is_fraud
    assert not fraud[days < 25].any()
    assert fraud[days >= 25].sum() >= 20
    assert (traffic.scenario[fraud] == SCENARIO_CODES["card_testing"]).all()
    assert ((traffic.amount[fraud] >= 0.5) & (traffic.amount[fraud] <= 5.0)).all()

    bursts = traffic.world.card_tests
    assert len(bursts) > 5
    assert (bursts[:, 0] >= 25).all()
    for day, customer in bursts:
        rows = np.flatnonzero(fraud & (traffic.user_index == customer) & (days == day))
        assert 4 <= len(rows) <= 12
        assert len(np.unique(traffic.merchant_index[rows])) == len(rows)
        assert np.ptp(traffic.timestamp_s[rows]) < 30 * 60


def test_card_testing_drift_day_defaults_to_mid_way() -> None:
    traffic = simulate(
        SimulationConfig(customers=3000, merchants=2000, days=30, scenarios=("card_testing",))
    )
    fraud_days = _days(traffic)[traffic.is_fraud]
    assert fraud_days.size > 0
    assert fraud_days.min() >= 15
    assert traffic.summary()["drift_day"] == 15


def test_card_testing_intensity_can_be_set() -> None:
    config = SimulationConfig(
        customers=500, merchants=1000, days=20, drift_day=10, scenarios=("card_testing",)
    )
    scaled = simulate(config).world.card_tests
    intense = simulate(replace(config, card_tests_per_day=12.0)).world.card_tests
    assert len(scaled) < 10  # 3 a day per 5,000 customers: 0.3 a day here
    assert len(intense) == 120  # a whole number a day is exact
    assert (intense[:, 0] >= 10).all()


def test_label_delays(small: SimulatedTraffic) -> None:
    delay = small.labeled_at_s - small.timestamp_s
    genuine = delay[~small.is_fraud]
    assert genuine.min() >= 7 * DAY_S
    assert genuine.max() <= 8 * DAY_S
    fraud = delay[small.is_fraud]
    assert fraud.min() >= 3600
    assert fraud.max() <= 60 * DAY_S


def test_fraud_report_delay_has_a_median_of_about_two_days() -> None:
    traffic = simulate(replace(MEDIUM, scenarios=("large_amount",)))
    delay = (traffic.labeled_at_s - traffic.timestamp_s)[traffic.is_fraud]
    assert 1.5 * DAY_S < np.median(delay) < 2.7 * DAY_S
    assert np.mean((delay > 6 * 3600) & (delay < 14 * DAY_S)) > 0.85


def test_customers_buy_only_from_nearby_merchants(small: SimulatedTraffic) -> None:
    world = small.world
    genuine = small.scenario != SCENARIO_CODES["card_testing"]
    gap = world.customer_xy[small.user_index] - world.merchant_xy[small.merchant_index]
    distance = np.hypot(gap[:, 0], gap[:, 1])[genuine]
    assert distance.max() <= 5.0
    customer = int(small.user_index[0])
    assert int(small.merchant_index[0]) in world.nearby(customer)
    # Customers without a merchant nearby make no (genuine) transactions.
    lonely = np.flatnonzero(np.diff(world.nearby_ptr) == 0)
    assert lonely.size > 0
    assert not np.isin(small.user_index[genuine], lonely).any()


def test_nearby_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    customers = rng.uniform(0, 100, size=(200, 2))
    merchants = np.vstack([rng.uniform(0, 100, size=(400, 2)), [[0.0, 0.0], [100.0, 100.0]]])
    ptr, found = nearby_pairs(customers, merchants, 5.0)
    distance = np.linalg.norm(customers[:, None, :] - merchants[None, :, :], axis=2)
    for c in range(len(customers)):
        np.testing.assert_array_equal(found[ptr[c] : ptr[c + 1]], np.flatnonzero(distance[c] <= 5))
    assert len(found) > 0


def test_summary_counts(small: SimulatedTraffic) -> None:
    summary = small.summary()
    assert summary["transactions"] == len(small)
    assert summary["frauds"] == int(small.is_fraud.sum())
    assert str(summary["first_timestamp"]).startswith("2018-04-01T")
    assert str(summary["last_timestamp"]).startswith("2018-04-30T")
    assert summary["drift_day"] == 15


def test_scenario_names() -> None:
    assert resolve_scenarios(["all"]) == tuple(SCENARIOS)
    assert len(SCENARIOS) == 4
    assert resolve_scenarios(["card_testing", "large_amount", "large_amount"]) == (
        "large_amount",
        "card_testing",
    )
    assert SimulationConfig().scenarios == DEFAULT_SCENARIOS
    assert SimulationConfig(scenarios=("all",)).scenarios == tuple(SCENARIOS)


def test_unknown_scenario_is_an_input_error_listing_the_known_names() -> None:
    with pytest.raises(InputError, match="unknown fraud scenario 'skimming'") as info:
        SimulationConfig(scenarios=("large_amount", "skimming"))
    for name in [*SCENARIOS, "all"]:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customers", 0, "customers must be an integer >= 1"),
        ("merchants", -5, "merchants must be an integer >= 1"),
        ("days", 0, "days must be an integer >= 1"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("drift_day", 30, r"drift_day must be within \[0, 30\)"),
        ("drift_day", -1, r"drift_day must be within \[0, 30\)"),
        ("start", datetime.date(2099, 12, 1), "must stay within 1970-2099"),
        ("card_tests_per_day", -1.0, r"card_tests_per_day must be within \[0, 10000\]"),
    ],
)
def test_invalid_config_is_an_input_error(field: str, value: object, message: str) -> None:
    arguments: dict[str, object] = {"customers": 10, "merchants": 10, "days": 30, field: value}
    with pytest.raises(InputError, match=message):
        SimulationConfig(**arguments)  # type: ignore[arg-type]


def test_wide_populations_get_wider_ids() -> None:
    traffic = simulate(SimulationConfig(customers=100_001, merchants=50, days=1, scenarios=()))
    assert len(traffic) > 0
    assert all(len(user) == 7 for user in traffic.user_id[:10])
    assert all(len(merchant) == 6 for merchant in traffic.merchant_id[:10])


def test_a_world_without_reachable_merchants_gives_empty_files(tmp_path: Path) -> None:
    traffic = simulate(SimulationConfig(customers=1, merchants=1, days=3, scenarios=()))
    assert len(traffic) == 0
    summary = traffic.summary()
    assert summary["transactions"] == 0
    assert summary["fraud_rate"] == 0.0
    assert summary["first_timestamp"] is None
    transactions, labels = write_traffic(traffic, tmp_path)
    assert transactions.read_bytes() == labels.read_bytes() == b""

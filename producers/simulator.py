"""Labelled synthetic card traffic, after the Fraud Detection Handbook's generator.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection - Practical
Handbook", chapter 3.2: customers and merchants ("terminals") live on a 100 x 100 square, each
customer buys only from the merchants within radius 5, and fraud scenarios are layered on top.
Added here: a drift scenario (`card_testing`) that only starts mid-way, and labels that arrive
with realistic reporting delays.

Everything is vectorised with numpy and deterministic per seed. Each part of the simulation draws
from its own child stream of `numpy.random.default_rng(seed)`, so selecting other scenarios does
not change the genuine traffic underneath them.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from schemas.errors import InputError

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
StrArray = NDArray[np.str_]

SCENARIOS: dict[str, str] = {
    "large_amount": "any transaction above 220 is fraud",
    "compromised_merchants": "2 merchants a day are hacked; all their sales for 28 days are fraud",
    "compromised_customers": "3 cards a day stolen; for 14 days 1/3 of their payments are x5 fraud",
    "card_testing": "drift: from drift_day, bursts of 4-12 tiny payments at random merchants",
}
"""Fraud scenarios by public name (`fraudstream simulate --scenario NAME`), for help texts."""

ALL_SCENARIOS = "all"
"""Pseudo scenario name selecting every scenario in `SCENARIOS`."""

DEFAULT_SCENARIOS: tuple[str, ...] = (
    "large_amount",
    "compromised_merchants",
    "compromised_customers",
)
"""The handbook's three scenarios; `card_testing` (the drift) is opt-in."""

SCENARIO_CODES: dict[str, int] = {
    "genuine": 0,
    "large_amount": 1,
    "compromised_merchants": 2,
    "compromised_customers": 3,
    "card_testing": 4,
}
"""Values of `SimulatedTraffic.scenario`. A transaction hit by several scenarios keeps the last
one in this order (as in the handbook), so with `large_amount` every amount above 220 is fraud."""

AREA = 100.0
RADIUS = 5.0
DAY_S = 86_400
HOUR_S = 3_600

TIME_OF_DAY_MEAN_S = 43_200.0
TIME_OF_DAY_STD_S = 20_000.0
LARGE_AMOUNT = 220.0

# Daily incident counts are the handbook's for 5,000 customers and 10,000 merchants and scale with
# the population, so small worlds keep a realistic fraud rate. Fractional counts are rounded
# stochastically per day: with the default sizes it is exactly 2 merchants and 3 cards a day.
REFERENCE_CUSTOMERS = 5_000
REFERENCE_MERCHANTS = 10_000
COMPROMISED_MERCHANTS_PER_DAY = 2.0
COMPROMISED_MERCHANT_DAYS = 28
COMPROMISED_CUSTOMERS_PER_DAY = 3.0
COMPROMISED_CUSTOMER_DAYS = 14
COMPROMISED_SHARE = 1.0 / 3.0
COMPROMISED_MULTIPLIER = 5.0
CARD_TESTS_PER_DAY = 3.0
CARD_TEST_MIN_SIZE = 4
CARD_TEST_MAX_SIZE = 12
CARD_TEST_SPAN_S = 1_800
CARD_TEST_MIN_AMOUNT = 0.5
CARD_TEST_MAX_AMOUNT = 5.0

# Fraud reports: lognormal delay, median 2 days, ~95 % between 6 h and 14 days.
REPORT_DELAY_MEDIAN_S = 2 * DAY_S
REPORT_DELAY_SIGMA = 1.0
REPORT_DELAY_MIN_S = HOUR_S
REPORT_DELAY_MAX_S = 60 * DAY_S
# Genuine transactions are confirmed when the chargeback window closes.
CHARGEBACK_WINDOW_S = 7 * DAY_S

_EPOCH = datetime.date(1970, 1, 1)
_LAST_DAY = datetime.date(2100, 1, 1) - datetime.timedelta(days=1)
_STREAMS = ("world", "traffic", "merchants", "customers", "card_testing", "labels")


def resolve_scenarios(names: Iterable[str]) -> tuple[str, ...]:
    """Known scenario names in canonical order, `all` expanded; unknown names are an InputError."""
    wanted: set[str] = set()
    for name in (names,) if isinstance(names, str) else names:
        if name == ALL_SCENARIOS:
            wanted.update(SCENARIOS)
        elif name in SCENARIOS:
            wanted.add(name)
        else:
            known = ", ".join([*SCENARIOS, ALL_SCENARIOS])
            raise InputError(f"unknown fraud scenario {name!r}; known scenarios: {known}")
    return tuple(name for name in SCENARIOS if name in wanted)


def _require_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"simulation {name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Invalid values raise InputError; `scenarios` is stored resolved."""

    customers: int = 5000
    merchants: int = 10000
    days: int = 183
    start: datetime.date = datetime.date(2018, 4, 1)
    seed: int = 0
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    drift_day: int | None = None
    """First day (0-based) of `card_testing`; None means `days // 2`."""
    card_tests_per_day: float | None = None
    """Card-testing bursts a day; None scales the reference 3 a day by the population."""

    def __post_init__(self) -> None:
        _require_count("customers", self.customers, 1)
        _require_count("merchants", self.merchants, 1)
        _require_count("days", self.days, 1)
        _require_count("seed", self.seed, 0)
        if isinstance(self.start, datetime.datetime) or not isinstance(self.start, datetime.date):
            raise InputError(f"simulation start must be a date, got {self.start!r}")
        # Labels come up to ~61 days after the last transaction; keep them before 2100.
        if self.start < _EPOCH or (_LAST_DAY - self.start).days < self.days + 62:
            raise InputError(
                f"simulation from {self.start} for {self.days} days must stay within 1970-2099"
            )
        if self.drift_day is not None:
            if isinstance(self.drift_day, bool) or not isinstance(self.drift_day, int):
                raise InputError(f"drift_day must be an integer, got {self.drift_day!r}")
            if not 0 <= self.drift_day < self.days:
                raise InputError(
                    f"drift_day must be within [0, {self.days}) (the simulated days), "
                    f"got {self.drift_day}"
                )
        rate = self.card_tests_per_day
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1e4
        ):
            raise InputError(f"card_tests_per_day must be within [0, 10000], got {rate!r}")
        object.__setattr__(self, "scenarios", resolve_scenarios(self.scenarios))

    @property
    def effective_drift_day(self) -> int:
        return self.days // 2 if self.drift_day is None else self.drift_day

    @property
    def start_s(self) -> int:
        """The first simulated midnight, in seconds since the epoch (UTC)."""
        return (self.start - _EPOCH).days * DAY_S


@dataclass(frozen=True)
class SimulationWorld:
    """The generator's hidden state: who lives where, who spends what, and what went wrong."""

    customer_xy: FloatArray
    """(customers, 2) locations on the [0, 100]^2 square."""
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_nb_tx_per_day: FloatArray
    merchant_xy: FloatArray
    """(merchants, 2) locations."""
    nearby_ptr: IntArray
    """CSR offsets: customer c buys from `nearby_merchants[nearby_ptr[c]:nearby_ptr[c + 1]]`."""
    nearby_merchants: IntArray
    compromised_merchants: IntArray
    """(n, 2) rows of (day, merchant): fraud at that merchant from day for 28 days."""
    compromised_customers: IntArray
    """(n, 2) rows of (day, customer): the card is used by fraudsters from day for 14 days."""
    card_tests: IntArray
    """(n, 2) rows of (day, customer): one card-testing burst on that day."""

    def nearby(self, customer: int) -> IntArray:
        """Indices of the merchants customer `customer` buys from (sorted)."""
        return self.nearby_merchants[self.nearby_ptr[customer] : self.nearby_ptr[customer + 1]]


@dataclass
class SimulatedTraffic:
    """Numpy columns, one row per transaction, in event-time order (ties: generation order)."""

    transaction_id: StrArray
    user_id: StrArray
    merchant_id: StrArray
    timestamp_s: IntArray
    """Seconds since the epoch, UTC."""
    amount: FloatArray
    """Rounded to cents, >= 0.01."""
    is_fraud: BoolArray
    scenario: NDArray[np.int8]
    """See `SCENARIO_CODES` (0 genuine)."""
    labeled_at_s: IntArray
    """When the label becomes known, seconds since the epoch; always after `timestamp_s`."""
    user_index: IntArray
    """Row of the user in `world` arrays."""
    merchant_index: IntArray
    config: SimulationConfig
    world: SimulationWorld

    def __len__(self) -> int:
        return len(self.timestamp_s)

    def summary(self) -> dict[str, object]:
        """Counts, fraud rate (overall and per scenario), time span and label delays."""
        count = len(self)
        frauds = int(self.is_fraud.sum())
        per_scenario: dict[str, object] = {}
        for name in self.config.scenarios:
            hits = int(np.count_nonzero(self.scenario == SCENARIO_CODES[name]))
            per_scenario[name] = {"frauds": hits, "fraud_rate": _ratio(hits, count)}
        delays = (self.labeled_at_s - self.timestamp_s)[self.is_fraud]
        return {
            "transactions": count,
            "frauds": frauds,
            "fraud_rate": _ratio(frauds, count),
            "per_scenario": per_scenario,
            "customers": self.config.customers,
            "active_customers": int(np.unique(self.user_index).size),
            "merchants": self.config.merchants,
            "days": self.config.days,
            "seed": self.config.seed,
            "drift_day": (
                self.config.effective_drift_day if "card_testing" in self.config.scenarios else None
            ),
            "first_timestamp": _iso(int(self.timestamp_s[0])) if count else None,
            "last_timestamp": _iso(int(self.timestamp_s[-1])) if count else None,
            "last_labeled_at": _iso(int(self.labeled_at_s.max())) if count else None,
            "median_fraud_label_delay_hours": (
                round(float(np.median(delays)) / HOUR_S, 1) if frauds else None
            ),
        }


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def simulate(config: SimulationConfig) -> SimulatedTraffic:
    """Generate the labelled traffic described by `config` (pure: same config, same result)."""
    streams = dict(
        zip(_STREAMS, np.random.default_rng(config.seed).spawn(len(_STREAMS)), strict=True)
    )
    world_rng = streams["world"]
    customer_xy, mean_amount, std_amount, mean_nb = _customer_profiles(world_rng, config.customers)
    merchant_xy = world_rng.uniform(0.0, AREA, size=(config.merchants, 2))
    nearby_ptr, nearby_merchants = nearby_pairs(customer_xy, merchant_xy, RADIUS)

    days = config.days
    user, merchant, day, tod, amount = _genuine(
        streams["traffic"], mean_amount, std_amount, mean_nb, nearby_ptr, nearby_merchants, days
    )
    code = np.zeros(len(user), dtype=np.int8)
    card = np.full(len(user), -1, dtype=np.int64)
    empty_events = np.zeros((0, 2), dtype=np.int64)
    compromised_merchants = compromised_customers = card_tests = empty_events
    if "large_amount" in config.scenarios:
        code[amount > LARGE_AMOUNT] = SCENARIO_CODES["large_amount"]
    if "compromised_merchants" in config.scenarios:
        rng = streams["merchants"]
        rate = COMPROMISED_MERCHANTS_PER_DAY * config.merchants / REFERENCE_MERCHANTS
        compromised_merchants = _daily_incidents(rng, days, config.merchants, rate)
        hit, _ = _covered(compromised_merchants, COMPROMISED_MERCHANT_DAYS, days, merchant, day)
        code[hit] = SCENARIO_CODES["compromised_merchants"]
    if "compromised_customers" in config.scenarios:
        rng = streams["customers"]
        rate = COMPROMISED_CUSTOMERS_PER_DAY * config.customers / REFERENCE_CUSTOMERS
        compromised_customers = _daily_incidents(rng, days, config.customers, rate)
        hit, incident = _covered(compromised_customers, COMPROMISED_CUSTOMER_DAYS, days, user, day)
        chosen = hit & (rng.random(len(user)) < COMPROMISED_SHARE)
        amount[chosen] = np.round(amount[chosen] * COMPROMISED_MULTIPLIER, 2)
        code[chosen] = SCENARIO_CODES["compromised_customers"]
        card[chosen] = incident[chosen]
    timestamp = config.start_s + day * DAY_S + tod
    if "card_testing" in config.scenarios:
        rng = streams["card_testing"]
        scaled = CARD_TESTS_PER_DAY * config.customers / REFERENCE_CUSTOMERS
        rate = scaled if config.card_tests_per_day is None else config.card_tests_per_day
        first_day = config.effective_drift_day
        card_tests = _daily_incidents(rng, days, config.customers, rate, first_day=first_day)
        t_user, t_merchant, t_time, t_amount, t_burst = _card_test_bursts(
            rng, card_tests, config.merchants, config.start_s
        )
        user = np.concatenate([user, t_user])
        merchant = np.concatenate([merchant, t_merchant])
        timestamp = np.concatenate([timestamp, t_time])
        amount = np.concatenate([amount, t_amount])
        code = np.concatenate([code, np.full(len(t_user), SCENARIO_CODES["card_testing"], np.int8)])
        card = np.concatenate([card, t_burst + len(compromised_customers)])

    order = np.argsort(timestamp, kind="stable")
    user, merchant, timestamp = user[order], merchant[order], timestamp[order]
    amount, code, card = amount[order], code[order], card[order]
    is_fraud = code > 0
    labeled_at = _label_times(streams["labels"], timestamp, is_fraud, card)

    world = SimulationWorld(
        customer_xy=customer_xy,
        mean_amount=mean_amount,
        std_amount=std_amount,
        mean_nb_tx_per_day=mean_nb,
        merchant_xy=merchant_xy,
        nearby_ptr=nearby_ptr,
        nearby_merchants=nearby_merchants,
        compromised_merchants=compromised_merchants,
        compromised_customers=compromised_customers,
        card_tests=card_tests,
    )
    return SimulatedTraffic(
        transaction_id=_ids("tx", np.arange(len(timestamp), dtype=np.int64), 9),
        user_id=_ids("u", np.arange(config.customers, dtype=np.int64), 5)[user],
        merchant_id=_ids("m", np.arange(config.merchants, dtype=np.int64), 5)[merchant],
        timestamp_s=timestamp,
        amount=amount,
        is_fraud=is_fraud,
        scenario=code,
        labeled_at_s=labeled_at,
        user_index=user,
        merchant_index=merchant,
        config=config,
        world=world,
    )


def _customer_profiles(
    rng: np.random.Generator, customers: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Locations and spending habits, as in the handbook."""
    xy = rng.uniform(0.0, AREA, size=(customers, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=customers)
    std_amount = mean_amount / 2.0
    mean_nb_tx_per_day = rng.uniform(0.0, 4.0, size=customers)
    return xy, mean_amount, std_amount, mean_nb_tx_per_day


def nearby_pairs(
    customer_xy: FloatArray, merchant_xy: FloatArray, radius: float
) -> tuple[IntArray, IntArray]:
    """For each customer, the merchants within `radius` (inclusive), as CSR (offsets, indices).

    Merchants are bucketed into a grid of `radius`-sized cells, so only the 3 x 3 cells around a
    customer are compared: linear in the number of candidate pairs, not customers x merchants.
    """
    customers = len(customer_xy)
    side = max(1, math.ceil(AREA / radius))
    merchant_cell = _cells(merchant_xy, radius, side)
    by_cell = np.argsort(merchant_cell[:, 0] * side + merchant_cell[:, 1], kind="stable")
    sorted_cells = (merchant_cell[:, 0] * side + merchant_cell[:, 1])[by_cell]
    bounds = np.searchsorted(sorted_cells, np.arange(side * side + 1, dtype=np.int64))

    customer_cell = _cells(customer_xy, radius, side)
    step = np.array([-1, 0, 1], dtype=np.int64)
    cx = (customer_cell[:, 0:1] + np.repeat(step, 3)[None, :]).ravel()
    cy = (customer_cell[:, 1:2] + np.tile(step, 3)[None, :]).ravel()
    valid = (cx >= 0) & (cx < side) & (cy >= 0) & (cy < side)
    cell = np.where(valid, cx * side + cy, 0)
    low = bounds[cell]
    count = np.where(valid, bounds[cell + 1] - low, 0)

    owner = np.repeat(np.repeat(np.arange(customers, dtype=np.int64), 9), count)
    first = np.cumsum(count) - count
    within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(first, count)
    candidate = by_cell[np.repeat(low, count) + within]
    distance2 = np.sum((customer_xy[owner] - merchant_xy[candidate]) ** 2, axis=1)
    near = distance2 <= radius * radius
    owner, candidate = owner[near], candidate[near]
    order = np.lexsort((candidate, owner))
    owner, candidate = owner[order], candidate[order]
    ptr = np.zeros(customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=customers), out=ptr[1:])
    return ptr, candidate.astype(np.int64)


def _cells(xy: FloatArray, size: float, side: int) -> IntArray:
    return np.clip(np.floor(xy / size).astype(np.int64), 0, side - 1)


def _genuine(
    rng: np.random.Generator,
    mean_amount: FloatArray,
    std_amount: FloatArray,
    mean_nb_tx_per_day: FloatArray,
    nearby_ptr: IntArray,
    nearby_merchants: IntArray,
    days: int,
) -> tuple[IntArray, IntArray, IntArray, IntArray, FloatArray]:
    """Genuine spending: (customer, merchant, day, second of day, amount) per transaction."""
    customers = len(mean_amount)
    degree = np.diff(nearby_ptr)
    rate = np.where(degree > 0, mean_nb_tx_per_day, 0.0)
    per_day = rng.poisson(np.broadcast_to(rate[:, None], (customers, days)))
    slot = np.repeat(np.arange(customers * days, dtype=np.int64), per_day.ravel())
    user, day = np.divmod(slot, days)
    count = len(slot)

    time_of_day = _time_of_day(rng, count)

    mean = mean_amount[user]
    amount = rng.normal(mean, std_amount[user])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    amount = np.maximum(np.round(amount, 2), 0.01)

    choices = degree[user]
    pick = np.minimum((rng.random(count) * choices).astype(np.int64), choices - 1)
    merchant = nearby_merchants[nearby_ptr[user] + pick]
    return user, merchant, day, time_of_day, amount


def _time_of_day(rng: np.random.Generator, count: int) -> IntArray:
    """Seconds after midnight ~ Normal(noon, 20000 s), redrawn until inside the day."""
    seconds = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, size=count)
    outside = np.flatnonzero((seconds < 0) | (seconds >= DAY_S))
    while outside.size:
        seconds[outside] = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, size=outside.size)
        outside = outside[(seconds[outside] < 0) | (seconds[outside] >= DAY_S)]
    return np.floor(seconds).astype(np.int64)


def _daily_incidents(
    rng: np.random.Generator, days: int, population: int, rate: float, first_day: int = 0
) -> IntArray:
    """(day, victim) rows: `rate` distinct victims a day on average (stochastic rounding)."""
    whole = math.floor(rate)
    counts = whole + (rng.random(days) < rate - whole)
    rows: list[IntArray] = []
    for day in range(first_day, days):
        victims = rng.choice(population, size=min(int(counts[day]), population), replace=False)
        rows.append(np.column_stack([np.full(len(victims), day, np.int64), victims]))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def _covered(
    incidents: IntArray, duration: int, days: int, victim: IntArray, day: IntArray
) -> tuple[BoolArray, IntArray]:
    """Which (victim, day) rows fall in an incident's window [day0, day0 + duration).

    Also returns, per row, the index of the earliest incident covering it (-1 if none).
    """
    offsets = np.arange(duration, dtype=np.int64)
    window_day = incidents[:, 0:1] + offsets[None, :]
    inside = window_day < days
    keys = (incidents[:, 1:2] * days + window_day)[inside]
    owner = np.broadcast_to(np.arange(len(incidents), dtype=np.int64)[:, None], inside.shape)
    # Incidents are in day order, so the first occurrence of a key is the earliest incident.
    unique_keys, first = np.unique(keys, return_index=True)
    unique_owner = owner[inside][first]
    query = victim * days + day
    if not len(unique_keys):
        return np.zeros(len(query), dtype=np.bool_), np.full(len(query), -1, dtype=np.int64)
    position = np.minimum(np.searchsorted(unique_keys, query), len(unique_keys) - 1)
    hit = unique_keys[position] == query
    return hit, np.where(hit, unique_owner[position], -1)


def _card_test_bursts(
    rng: np.random.Generator, card_tests: IntArray, merchants: int, start_s: int
) -> tuple[IntArray, IntArray, IntArray, FloatArray, IntArray]:
    """Rows (customer, merchant, timestamp, amount, burst) for each card-testing burst.

    A burst is 4-12 small payments at distinct merchants anywhere, within 30 minutes.
    """
    sizes = np.minimum(
        rng.integers(CARD_TEST_MIN_SIZE, CARD_TEST_MAX_SIZE + 1, size=len(card_tests)), merchants
    )
    begins = rng.integers(0, DAY_S - CARD_TEST_SPAN_S, size=len(card_tests))
    burst = np.repeat(np.arange(len(card_tests), dtype=np.int64), sizes)
    merchant = np.concatenate(
        [rng.choice(merchants, size=int(size), replace=False) for size in sizes]
        or [np.zeros(0, dtype=np.int64)]
    ).astype(np.int64)
    offset = rng.integers(0, CARD_TEST_SPAN_S, size=len(burst))
    timestamp = start_s + card_tests[burst, 0] * DAY_S + begins[burst] + offset
    amount = np.round(rng.uniform(CARD_TEST_MIN_AMOUNT, CARD_TEST_MAX_AMOUNT, size=len(burst)), 2)
    return card_tests[burst, 1], merchant, timestamp.astype(np.int64), amount, burst


def _label_times(
    rng: np.random.Generator, timestamp: IntArray, is_fraud: BoolArray, card: IntArray
) -> IntArray:
    """When each label becomes known (rows in event-time order).

    Genuine: when the chargeback window closes (+7 days + up to 1 day). Fraud: after a lognormal
    reporting delay; a stolen or tested card (`card` >= 0) is reported once, at its first fraud
    plus one delay, and its later frauds are labelled then, or 1 h after they happen if later.
    """
    count = len(timestamp)
    confirmed = timestamp + CHARGEBACK_WINDOW_S + rng.integers(0, DAY_S + 1, size=count)
    delay = rng.lognormal(math.log(REPORT_DELAY_MEDIAN_S), REPORT_DELAY_SIGMA, size=count)
    delay = np.clip(np.rint(delay), REPORT_DELAY_MIN_S, REPORT_DELAY_MAX_S).astype(np.int64)
    labeled = np.where(is_fraud, timestamp + delay, confirmed)

    carded = np.flatnonzero(is_fraud & (card >= 0))
    if carded.size:
        cards, first = np.unique(card[carded], return_index=True)
        first_row = carded[first]  # rows are time-ordered, so this is each card's first fraud
        reported = timestamp[first_row] + delay[first_row]
        report_of_row = reported[np.searchsorted(cards, card[carded])]
        labeled[carded] = np.maximum(report_of_row, timestamp[carded] + REPORT_DELAY_MIN_S)
    return labeled.astype(np.int64)


def _ids(prefix: str, numbers: IntArray, min_width: int) -> StrArray:
    """`prefix` + zero-padded numbers, wide enough for the largest one."""
    width = max(min_width, len(str(int(numbers.max())))) if len(numbers) else min_width
    return np.strings.add(prefix, _zero_padded(numbers, width))


def _zero_padded(numbers: IntArray, width: int) -> StrArray:
    """Decimal strings of non-negative numbers, zero-padded to `width`."""
    if not len(numbers):  # numpy's zfill fails on empty arrays
        return np.zeros(0, dtype=np.str_)
    return np.strings.zfill(numbers.astype(np.str_), width)


def _timestamps(seconds: IntArray) -> list[str]:
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s", timezone="UTC").tolist()


def _amounts(amount: FloatArray) -> list[str]:
    cents = np.rint(amount * 100).astype(np.int64)
    whole, fraction = np.divmod(cents, 100)
    return np.strings.add(
        np.strings.add(whole.astype(np.str_), "."), _zero_padded(fraction, 2)
    ).tolist()


def transaction_lines(traffic: SimulatedTraffic) -> Iterator[str]:
    """The transactions as compact JSON lines (no newline), in event-time order."""
    columns = zip(
        traffic.transaction_id.tolist(),
        traffic.user_id.tolist(),
        traffic.merchant_id.tolist(),
        _amounts(traffic.amount),
        _timestamps(traffic.timestamp_s),
        strict=True,
    )
    for tx, user, merchant, amount, timestamp in columns:
        yield (
            f'{{"transaction_id":"{tx}","user_id":"{user}","merchant_id":"{merchant}",'
            f'"amount":{amount},"currency":"EUR","timestamp":"{timestamp}"}}'
        )


def label_lines(traffic: SimulatedTraffic) -> Iterator[str]:
    """The labels as compact JSON lines, ordered by labeled_at (ties: transaction order), with
    the merchant and event time of the labelled transaction (as a fraud-operations feed has)."""
    order = np.argsort(traffic.labeled_at_s, kind="stable")
    verdict = np.where(traffic.is_fraud[order], "true", "false").tolist()
    columns = zip(
        traffic.transaction_id[order].tolist(),
        verdict,
        _timestamps(traffic.labeled_at_s[order]),
        traffic.merchant_id[order].tolist(),
        _timestamps(traffic.timestamp_s[order]),
        strict=True,
    )
    for tx, is_fraud, labeled_at, merchant, timestamp in columns:
        yield (
            f'{{"transaction_id":"{tx}","is_fraud":{is_fraud},"labeled_at":"{labeled_at}",'
            f'"merchant_id":"{merchant}","transaction_time":"{timestamp}"}}'
        )


def write_traffic(traffic: SimulatedTraffic, out_dir: Path) -> tuple[Path, Path]:
    """Write `transactions.jsonl` and `labels.jsonl` into `out_dir` (created), each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    transactions = out_dir / "transactions.jsonl"
    labels = out_dir / "labels.jsonl"
    _write_lines(transactions, transaction_lines(traffic))
    _write_lines(labels, label_lines(traffic))
    return transactions, labels


def _write_lines(path: Path, lines: Iterable[str], chunk: int = 65_536) -> None:
    """Write lines to a temporary file next to `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as out:
            batch: list[str] = []
            for line in lines:
                batch.append(line)
                if len(batch) == chunk:
                    out.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                out.write("\n".join(batch) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)

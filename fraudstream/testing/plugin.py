"""fraudstream's pytest plugin: fixtures for testing a service against a real fraudstream.

Registered through the `pytest11` entry point, so installing fraudstream is all it takes.
Fixtures (all prefixed `fraudstream_`, so they never collide with a project's own):

* `fraudstream_broker` (session) — a Kafka broker (see `fraudstream.testing.broker` for how
  it is chosen); without one, the tests that need it are skipped, saying why;
* `fraudstream_registry` (session) — the registry to score with: `--fraudstream-registry DIR`
  or the ini option `fraudstream_registry`, else a small model trained on simulated data;
* `fraudstream_topics` — a factory of fresh, uniquely named topics;
* `fraudstream_stack` — a `Stack`: fresh topics, a private registry copy, `replay`, `scores`;
  every service it started is stopped after the test and its exit code checked;
* `fraudstream_worker`, `fraudstream_retrain` — a scoring worker (ready to score) and the
  retrain service on that stack;
* `fraudstream_golden` — `check(scores, path, tolerance)` against a golden file;
  `--fraudstream-update-golden` rewrites the files instead.

Tests using the broker fixtures get the `fraudstream` marker (`-m "not fraudstream"` skips
them). This module imports only pytest and the standard library; the rest loads in fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fraudstream.testing.broker import Broker
    from fraudstream.testing.process import ServiceProcess
    from fraudstream.testing.stack import Stack

BROKER_FIXTURES = frozenset(
    {
        "fraudstream_broker",
        "fraudstream_topics",
        "fraudstream_stack",
        "fraudstream_worker",
        "fraudstream_retrain",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fraudstream", "fraudstream test kit")
    group.addoption(
        "--fraudstream-registry",
        default=None,
        help="Model registry the fraudstream fixtures score with (default: train a small model).",
    )
    group.addoption(
        "--fraudstream-update-golden",
        action="store_true",
        default=False,
        help="Rewrite golden files checked with fraudstream_golden instead of comparing.",
    )
    parser.addini(
        "fraudstream_registry",
        "Model registry for the fraudstream fixtures (relative to the rootdir).",
        default="",
    )
    parser.addini(
        "fraudstream_require_broker",
        "Fail, instead of skipping, when no Kafka broker can be had.",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fraudstream: uses fraudstream's broker fixtures (deselect with -m 'not fraudstream')",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fraudstream)


@pytest.fixture(scope="session")
def fraudstream_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """A Kafka broker for the whole session (started and stopped here if it is ours)."""
    from fraudstream.testing.broker import BrokerUnavailable, open_broker

    with ExitStack() as stack:
        try:
            broker = stack.enter_context(open_broker(tmp_path_factory.mktemp("fraudstream")))
        except BrokerUnavailable as exc:
            message = f"no Kafka broker for fraudstream's fixtures: {exc}"
            if request.config.getini("fraudstream_require_broker"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield broker


@pytest.fixture(scope="session")
def fraudstream_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The registry workers score with; never changed (each stack works on a copy)."""
    config = request.config
    option = config.getoption("fraudstream_registry")
    ini = str(config.getini("fraudstream_registry"))
    given = Path(option) if option else (config.rootpath / ini if ini else None)
    if given is not None:
        if not given.is_dir():
            raise pytest.UsageError(f"fraudstream registry {given} is not a directory")
        return given
    from fraudstream.testing.model import train_small_registry

    return train_small_registry(tmp_path_factory.mktemp("fraudstream-model"))


@pytest.fixture
def fraudstream_topics(fraudstream_broker: Broker) -> Callable[..., dict[str, str]]:
    """`make("transactions", partitions=4)` -> role -> a fresh, unique topic name."""
    from fraudstream.testing.stack import fresh_topics

    def make(*roles: str, partitions: int = 4) -> dict[str, str]:
        return fresh_topics(fraudstream_broker, *roles, partitions=partitions)

    return make


@pytest.fixture
def fraudstream_stack(
    fraudstream_broker: Broker, fraudstream_registry: Path, tmp_path: Path
) -> Iterator[Stack]:
    """One test's fraudstream; its services are stopped afterwards, exit codes checked."""
    from fraudstream.testing.stack import Stack

    stack = Stack.create(fraudstream_broker, fraudstream_registry, tmp_path / "fraudstream")
    yield stack
    problems = stack.close()
    if problems:
        pytest.fail("fraudstream services ended badly:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture
def fraudstream_worker(fraudstream_stack: Stack) -> ServiceProcess:
    """A scoring worker on `fraudstream_stack`, ready to score."""
    return fraudstream_stack.start_worker()


@pytest.fixture
def fraudstream_retrain(fraudstream_stack: Stack) -> ServiceProcess:
    """The retrain service on `fraudstream_stack` with its default options (for others:
    `fraudstream_stack.start_retrain("--cooldown", "5s", ...)`)."""
    return fraudstream_stack.start_retrain()


@pytest.fixture
def fraudstream_golden(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`check(scores, path, tolerance=1e-6)`: decisions equal, scores within the tolerance."""
    from fraudstream.testing.golden import assert_matches_golden

    update = bool(request.config.getoption("fraudstream_update_golden"))

    def check(scores: Any, path: Path | str, tolerance: float = 1e-6) -> None:
        assert_matches_golden(scores, Path(path), tolerance, update)

    return check

"""Test your service against fraudstream: the helpers fraudstream's own tests use.

A real broker (`open_broker`), fresh topics and a running worker (`Stack`), recorded traffic
replayed into it (`Stack.replay`), every copy of every score read back with bounded waits
(`Stack.scores`), and golden files (`assert_matches_golden`). The pytest plugin
(`fraudstream.testing.plugin`, registered when fraudstream is installed) turns these into the
`fraudstream_*` fixtures; see the README, "Testing your service against fraudstream".

Importing this package is cheap: Faust, XGBoost and the Kafka clients load only when used.
"""

from fraudstream.testing.broker import Broker, BrokerUnavailable, KitSettings, open_broker
from fraudstream.testing.golden import (
    GoldenDiff,
    GoldenMismatch,
    assert_matches_golden,
    compare,
    read_golden,
    write_golden,
)
from fraudstream.testing.model import train_small_registry
from fraudstream.testing.process import ServiceProcess, scrape
from fraudstream.testing.recordings import Replayed, replay
from fraudstream.testing.scores import Copy, Scores, collect, covers, read_all
from fraudstream.testing.stack import Stack, fresh_topics

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Copy",
    "GoldenDiff",
    "GoldenMismatch",
    "KitSettings",
    "Replayed",
    "Scores",
    "ServiceProcess",
    "Stack",
    "assert_matches_golden",
    "collect",
    "compare",
    "covers",
    "fresh_topics",
    "open_broker",
    "read_all",
    "read_golden",
    "replay",
    "scrape",
    "train_small_registry",
    "write_golden",
]

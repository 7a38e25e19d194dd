"""Where a profiled worker's time goes, in words: collapsed stacks grouped by what they do.

`fraudstream bench --profile FILE.txt` writes py-spy's collapsed stacks (one line per stack:
frames from the root, `;`-separated, then the sample count). Each sample after start-up (no
frame of the import machinery) goes to one group: walking from the leaf towards the root, the
first frame that names one of a group's markers decides, groups tried in the order below. What
no marker names is the pipeline's own code and the event loop. The README's benchmark section
describes the worker's profile with this table.

>>> lines = ["main;drain;score_batch (stream_app/batch.py:10);observe (models/user_window.py:5) 3",
...          "main;run;_score_input (models/drift_records.py:76) 1",
...          "main;_find_and_load (<frozen importlib._bootstrap>:1) 6"]
>>> shares(lines)
Shares(samples=4, start_up=6, groups=[("the users' windows", 3), ('the drift monitor', 1)])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "the drift monitor",
        (
            "drift_monitor.py",
            "cluster_drift.py",
            "drift_records.py",
            "drift_signals.py",
            "score_columns.py",
            "drift_join.py",
            "hourly_closure.py",
            "models/drift.py",
        ),
    ),
    ("building the score records", ("score_records.py",)),
    ("reasons", ("Scorer._reasons",)),
    ("XGBoost", ("xgboost/",)),
    (
        "seen ids and the journal",
        (
            "seen_ids.py",
            "UserRecord.remember",
            "JournalEntry",
            "UserRecord.prune",
            "UserRecord.replayed",
        ),
    ),
    (
        "writing users' records",
        (
            "user_records.py",
            "UserRecord.encode",
            "UserWindows.to_json",
            "faust/tables",
            "faust/stores",
            "rocksdb",
        ),
    ),
    ("the users' windows", ("user_window.py",)),
    ("features and merchant values", ("features.py", "merchant_history.py", "merchant_window.py")),
    ("the hourly partials and merchant log", ("merchant_partials.py", "merchant_log.py")),
    ("pydantic", ("pydantic",)),
    (
        "the rest of decoding",
        ("decode (stream_app/batch.py", "decode_batch (", "ScoringPipeline._transactions"),
    ),
    ("the sink and librdkafka", ("kafka_sink.py", "confluent_kafka")),
    ("metrics", ("metrics.py", "prometheus_client")),
    ("aiokafka's fetches and records", ("aiokafka/",)),
    ("the flush thread and other threads", ("threading.py",)),
)
REST = "the pipeline's own code and the event loop"
START_UP = "_find_and_load"


@dataclass(frozen=True)
class Shares:
    samples: int
    """Samples after start-up."""
    start_up: int
    groups: list[tuple[str, int]]
    """(group, samples), largest first."""

    def table(self) -> list[tuple[str, float]]:
        """(group, percent of the samples after start-up), largest first."""
        total = max(self.samples, 1)
        return [(name, 100.0 * n / total) for name, n in self.groups]

    def summary(self) -> str:
        shown = ", ".join(f"{share:.1f} % {name}" for name, share in self.table())
        return f"{self.samples:,} samples after start-up ({self.start_up:,} in it): {shown}"


def shares(lines: Iterable[str]) -> Shares:
    counts: Counter[str] = Counter()
    start_up = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(START_UP in frame for frame in frames):
            start_up += int(count)
            continue
        counts[_group(frames)] += int(count)
    return Shares(sum(counts.values()), start_up, counts.most_common())


def _group(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in GROUPS:
            if any(marker in frame for marker in markers):
                return name
    return REST

"""The drift monitor's compact score storage: rows read back exactly as they went in, and the
open-hour path gives the same hour records and joins as one object per score did."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from models.cluster_drift import canonical
from models.drift_join import HourlyJoin
from models.drift_signals import BucketSums
from models.feedback import Scored
from models.score_columns import ScoreColumns

scoreds = st.builds(
    Scored,
    event_time_ms=st.integers(-(2**62), 2**62),
    score=st.floats(0.0, 1.0),
    flagged=st.booleans(),
    model_version=st.sampled_from(["v1", "v2", "v10"]),
    shadow_version=st.none() | st.sampled_from(["v1", "s2"]),
    shadow_score=st.none() | st.floats(0.0, 1.0),
    shadow_flagged=st.none() | st.booleans(),
)
signal_values = st.none() | st.floats(allow_nan=False)


@given(st.lists(st.tuples(st.text(max_size=8), scoreds, st.tuples(signal_values, signal_values))))
def test_rows_read_back_exactly(rows: list[tuple[str, Scored, tuple[float | None, ...]]]) -> None:
    columns = ScoreColumns(width=2)
    for transaction_id, scored, signals in rows:
        columns.append(transaction_id, scored, signals)
    assert len(columns) == len(rows)
    assert columns.ids == [r[0] for r in rows]
    assert [columns.scored(i) for i in range(len(rows))] == [r[1] for r in rows]
    assert columns.versions() == [r[1].model_version for r in rows]
    expected = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), 2)
    np.testing.assert_array_equal(columns.signals(), expected)
    copied = ScoreColumns.concat([columns, columns]).select(range(2 * len(rows))[::-1])
    assert [copied.scored(i) for i in range(len(copied))] == [r[1] for r in rows[::-1] * 2]


def test_signals_of_one_version_give_the_sums_of_its_rows() -> None:
    columns = ScoreColumns(width=2)
    rows = [("a", "v1", (0.1, None)), ("b", "v2", (0.7, 3.0)), ("c", "v1", (0.3, 2.0))]
    for transaction_id, version, signals in rows:
        columns.append(transaction_id, Scored(0, 0.5, False, version), signals)
    from_matrix, from_rows = BucketSums(2), BucketSums(2)
    from_matrix.add_matrix(columns.signals("v1"))
    from_rows.add_rows([signals for _, version, signals in rows if version == "v1"])
    assert from_matrix.stats() == from_rows.stats()
    assert from_matrix.stats().counts == (2, 1)
    assert len(columns.signals("v9")) == 0


def test_marks_stay_with_their_row_and_are_not_copied() -> None:
    columns = ScoreColumns()
    for name in "abc":
        columns.append(name, Scored(1, 0.5, True, "v1", None, None, True))
    columns.mark(1)
    assert [columns.marked(i) for i in range(3)] == [False, True, False]
    assert columns.scored(1) == Scored(1, 0.5, True, "v1", None, None, True)
    assert not ScoreColumns.concat([columns]).marked(1)
    assert not columns.select([1]).marked(0)


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abcd")), max_size=40))
def test_canonical_order_is_a_stable_sort_by_time_then_id(rows: list[tuple[int, str]]) -> None:
    columns = ScoreColumns()
    for row, (time_ms, transaction_id) in enumerate(rows):
        columns.append(transaction_id, Scored(time_ms, row / 100, False, "v1"))
    expected = sorted(range(len(rows)), key=lambda i: rows[i])
    assert canonical(columns) == expected


def test_the_join_keeps_the_first_score_of_a_repeated_id_in_canonical_order() -> None:
    columns = ScoreColumns()
    for transaction_id, score in (("b", 0.1), ("a", 0.2), ("b", 0.3)):
        columns.append(transaction_id, Scored(5, score, False, "v1"))
    join = HourlyJoin(horizon_hours=10, max_scores=10)
    join.insert_columns(0, columns.select(canonical(columns)))
    assert join.counts.duplicate_scores == 1
    found = join.claim("b", label_hour=0)
    assert isinstance(found, Scored)
    assert found.score == 0.1
    assert join.claim("b", label_hour=0) == "repeat"
    assert join.claim("a", label_hour=0) == Scored(5, 0.2, False, "v1")

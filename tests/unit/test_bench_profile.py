"""The profile's shares: each sample after start-up goes to the group of its leaf-most named
frame, and the rest to the pipeline's own code."""

from __future__ import annotations

import doctest

import fraudstream.bench.profile_shares
from fraudstream.bench.profile_shares import REST, shares

ROOT = "<module> (fraudstream/cli.py:1);run (faust/transport/consumer.py:9)"


def test_the_doctests_run() -> None:
    assert doctest.testmod(fraudstream.bench.profile_shares).failed == 0


def test_the_leaf_most_named_frame_decides_and_start_up_is_left_out() -> None:
    lines = [
        # pydantic called from decoding: pydantic's time, not decoding's
        f"{ROOT};decode (stream_app/batch.py:57);model_validate_json (pydantic/main.py:1) 5",
        f"{ROOT};decode (stream_app/batch.py:57) 2",
        # the drift monitor's numpy call is the monitor's
        f"{ROOT};step (stream_app/drift_monitor.py:1);add_matrix (models/drift_signals.py:1);"
        "clip (numpy/core/fromnumeric.py:1) 3",
        f"{ROOT};_score (stream_app/pipeline.py:1) 4",  # nothing named: the pipeline's own
        f"{ROOT};_find_and_load (<frozen importlib._bootstrap>:1);exec (xgboost/core.py:1) 9",
        "not a stack line",
        "",
    ]
    result = shares(lines)
    assert result.samples == 14 and result.start_up == 9
    assert dict(result.groups) == {
        "pydantic": 5,
        "the rest of decoding": 2,
        "the drift monitor": 3,
        REST: 4,
    }
    table = dict(result.table())
    assert round(table["pydantic"], 1) == round(100 * 5 / 14, 1)
    assert result.summary().startswith("14 samples after start-up (9 in it): 35.7 % pydantic")

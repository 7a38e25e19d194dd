"""Scores the drift monitor keeps, in columns: a few flat arrays instead of objects per score.

The cluster's monitor holds every score of its open hours and, for the label join, of the
closed hours within its horizon: a million of them in a busy leader. As objects (a `ScoreInput`
with its `Scored`, a tuple of signals, boxed floats and ints) a score cost several times its
data; in columns only the transaction id stays an object (README, "Benchmark"). A row
reads back as the same `Scored` (ints and floats are stored exactly, versions in a small table)
and its signals as the same floats (None as NaN, which the bucket sums skip either way).

>>> from models.feedback import Scored
>>> rows = ScoreColumns(width=1)
>>> rows.append("t1", Scored(7, 0.25, True, "v1", "v2", 0.5, False), (0.25,))
>>> rows.scored(0)
Scored(event_time_ms=7, score=0.25, flagged=True, model_version='v1', shadow_version='v2', \
shadow_score=0.5, shadow_flagged=False)
>>> rows.signals().tolist(), rows.version(0), len(rows)
([[0.25]], 'v1', 1)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.feedback import Scored

_FLAGGED = 1
_SHADOW_FLAGGED = 2
_HAS_SHADOW_FLAGGED = 4
_HAS_SHADOW_SCORE = 8
_MARKED = 16


class _Names:
    """Model versions (or None) by small code, so a row stores two bytes for each."""

    __slots__ = ("codes", "names")

    def __init__(self) -> None:
        self.names: list[str | None] = []
        self.codes: dict[str | None, int] = {}

    def code(self, name: str | None) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code


class ScoreColumns:
    """Rows of (transaction id, `Scored`, `width` signals) in parallel arrays, appended in order.

    A row can also be marked (`mark`, `marked`): the join marks the scores a label has met.
    """

    __slots__ = (
        "_flags",
        "_names",
        "_scores",
        "_shadow_scores",
        "_shadow_versions",
        "_signals",
        "_times",
        "_versions",
        "ids",
        "width",
    )

    def __init__(self, width: int = 0) -> None:
        self.width = width
        self.ids: list[str] = []
        self._times = array("q")
        self._scores = array("d")
        self._shadow_scores = array("d")
        self._flags = array("B")
        self._versions = array("H")
        self._shadow_versions = array("H")
        self._signals = array("d")
        self._names = _Names()

    def __len__(self) -> int:
        return len(self.ids)

    def append(
        self, transaction_id: str, scored: Scored, signals: Sequence[float | None] = ()
    ) -> None:
        if len(signals) != self.width:
            raise ValueError(f"expected {self.width} signals, got {len(signals)}")
        flags = _FLAGGED if scored.flagged else 0
        if scored.shadow_flagged is not None:
            flags |= _HAS_SHADOW_FLAGGED | (_SHADOW_FLAGGED if scored.shadow_flagged else 0)
        if scored.shadow_score is not None:
            flags |= _HAS_SHADOW_SCORE
        self.ids.append(transaction_id)
        self._times.append(scored.event_time_ms)
        self._scores.append(scored.score)
        self._shadow_scores.append(0.0 if scored.shadow_score is None else scored.shadow_score)
        self._flags.append(flags)
        self._versions.append(self._names.code(scored.model_version))
        self._shadow_versions.append(self._names.code(scored.shadow_version))
        self._signals.extend(math.nan if v is None else v for v in signals)

    def scored(self, row: int) -> Scored:
        flags = self._flags[row]
        names = self._names.names
        version = names[self._versions[row]]
        if version is None:  # pragma: no cover - append takes a Scored, whose version is a str
            raise AssertionError("a row without a model version")
        return Scored(
            event_time_ms=self._times[row],
            score=self._scores[row],
            flagged=bool(flags & _FLAGGED),
            model_version=version,
            shadow_version=names[self._shadow_versions[row]],
            shadow_score=self._shadow_scores[row] if flags & _HAS_SHADOW_SCORE else None,
            shadow_flagged=bool(flags & _SHADOW_FLAGGED) if flags & _HAS_SHADOW_FLAGGED else None,
        )

    def version(self, row: int) -> str:
        return self.scored_version(self._versions[row])

    def scored_version(self, code: int) -> str:
        name = self._names.names[code]
        if name is None:  # pragma: no cover - see `scored`
            raise AssertionError("a row without a model version")
        return name

    def versions(self) -> list[str]:
        """Every row's model version, in row order."""
        return [self.scored_version(c) for c in self._versions]

    def times(self) -> npt.NDArray[np.int64]:
        return np.frombuffer(self._times, dtype=np.int64) if self._times else np.zeros(0, np.int64)

    def signals(self, version: str | None = None) -> npt.NDArray[np.float64]:
        """The signals as a (rows, width) matrix (NaN: no value); only `version`'s rows if set."""
        matrix = np.array(self._signals, dtype=np.float64).reshape(len(self), self.width)
        if version is None:
            return matrix
        code = self._names.codes.get(version)
        if code is None:
            return matrix[:0]
        return matrix[np.array(self._versions, dtype=np.uint16) == code]

    def mark(self, row: int) -> None:
        self._flags[row] |= _MARKED

    def marked(self, row: int) -> bool:
        return bool(self._flags[row] & _MARKED)

    @staticmethod
    def concat(parts: Sequence[ScoreColumns], signals: bool = True) -> ScoreColumns:
        """All rows of `parts`, in order, in one (marks are not copied); without the signals
        unless `signals`."""
        width = parts[0].width if parts else 0
        if any(part.width != width for part in parts):
            raise ValueError("parts of different widths")
        out = ScoreColumns(width if signals else 0)
        for part in parts:
            remap = array("H", (out._names.code(name) for name in part._names.names))
            out.ids.extend(part.ids)
            out._times.extend(part._times)
            out._scores.extend(part._scores)
            out._shadow_scores.extend(part._shadow_scores)
            out._flags.extend(f & ~_MARKED for f in part._flags)
            out._versions.extend(remap[c] for c in part._versions)
            out._shadow_versions.extend(remap[c] for c in part._shadow_versions)
            if out.width:
                out._signals.extend(part._signals)
        return out

    def select(self, rows: Sequence[int], signals: bool = True) -> ScoreColumns:
        """A copy with these rows, in this order (marks are not copied); without the signals
        unless `signals`."""
        out = ScoreColumns(self.width if signals else 0)
        out._names.names = list(self._names.names)
        out._names.codes = dict(self._names.codes)
        ids = self.ids
        out.ids = [ids[i] for i in rows]
        if not rows:
            return out
        index = np.asarray(rows, dtype=np.intp)
        for name in ("_times", "_scores", "_shadow_scores", "_versions", "_shadow_versions"):
            _pick(getattr(self, name), index, getattr(out, name))
        _pick(self._flags, index, out._flags)
        out._flags = array("B", (f & ~_MARKED for f in out._flags))
        if out.width:
            out._signals.frombytes(self.signals()[index].tobytes())
        return out


def _pick(source: array[Any], index: npt.NDArray[np.intp], into: array[Any]) -> None:
    into.frombytes(np.frombuffer(source, dtype=source.typecode)[index].tobytes())

"""Golden files: compare today's scores with a recorded run — decisions equal, scores close.

A golden file is JSON Lines with at least `transaction_id`, `decision` and `score` per line:
what `write_golden` writes, or any FraudScore file (`fraudstream score --out`, `fraudstream
record fraud-scores`). A new model may move scores a little; a changed decision is what a
payments service would notice, so decisions must match exactly and scores within a tolerance.

>>> golden = {"t1": {"decision": "approve", "score": 0.02},
...           "t2": {"decision": "decline", "score": 0.97}}
>>> now = {"t1": {"decision": "approve", "score": 0.0201},
...        "t2": {"decision": "review", "score": 0.61}}
>>> diff = compare(now, golden, tolerance=1e-3)
>>> bool(diff), diff.decisions
(True, (('t2', 'decline', 'review'),))
>>> print(diff.report())
1 of 2 transactions differ from the golden file:
  decision changed (1):
    t2: decline -> review
  score beyond ±0.001 (1):
    t2: 0.970000 -> 0.610000 (-0.360000)
>>> bool(compare(now, {"t1": golden["t1"]}, tolerance=1e-3).unexpected)
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Answer = Mapping[str, Any]
"""What is compared of one transaction: its `decision` and `score` (a dict or a FraudScore)."""


@dataclass(frozen=True)
class GoldenDiff:
    """Everything that differs between a run and its golden file (empty: they match)."""

    compared: int
    missing: tuple[str, ...] = ()
    """In the golden file, not scored now."""
    unexpected: tuple[str, ...] = ()
    """Scored now, not in the golden file."""
    decisions: tuple[tuple[str, str, str], ...] = ()
    """(transaction_id, golden decision, decision now)."""
    scores: tuple[tuple[str, float, float], ...] = ()
    """(transaction_id, golden score, score now) beyond the tolerance."""
    tolerance: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.decisions or self.scores)

    def report(self, limit: int = 20) -> str:
        """A readable account of the differences, at most `limit` lines per kind."""
        changed = {t for t, *_ in self.decisions} | {t for t, *_ in self.scores}
        lines = [
            f"{len(changed | set(self.missing) | set(self.unexpected))} of {self.compared} "
            "transactions differ from the golden file:"
        ]
        sections: list[tuple[str, list[str]]] = [
            ("decision changed", [f"{t}: {old} -> {new}" for t, old, new in self.decisions]),
            (
                f"score beyond ±{self.tolerance:g}",
                [f"{t}: {old:.6f} -> {new:.6f} ({new - old:+.6f})" for t, old, new in self.scores],
            ),
            ("in the golden file, not scored", list(self.missing)),
            ("scored, not in the golden file", list(self.unexpected)),
        ]
        for title, items in sections:
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")
        return "\n".join(lines)


class GoldenMismatch(AssertionError):
    """Scores differ from their golden file; the message is the diff's report."""


def compare(
    now: Mapping[str, Any], golden: Mapping[str, Any], tolerance: float = 1e-6
) -> GoldenDiff:
    """Compare two `transaction_id -> answer` mappings (answers: dicts or FraudScores)."""
    decisions, scores = [], []
    for transaction_id in sorted(now.keys() & golden.keys()):
        old, new = _answer(golden[transaction_id]), _answer(now[transaction_id])
        if old["decision"] != new["decision"]:
            decisions.append((transaction_id, str(old["decision"]), str(new["decision"])))
        if abs(float(new["score"]) - float(old["score"])) > tolerance:
            scores.append((transaction_id, float(old["score"]), float(new["score"])))
    return GoldenDiff(
        compared=len(now.keys() | golden.keys()),
        missing=tuple(sorted(golden.keys() - now.keys())),
        unexpected=tuple(sorted(now.keys() - golden.keys())),
        decisions=tuple(decisions),
        scores=tuple(scores),
        tolerance=tolerance,
    )


def read_golden(path: Path) -> dict[str, dict[str, Any]]:
    """transaction_id -> {decision, score, ...} from a golden (or FraudScore) JSONL file."""
    from schemas.errors import InputError
    from schemas.jsonl import iter_lines

    found: dict[str, dict[str, Any]] = {}
    for number, line in iter_lines(path):
        try:
            document = json.loads(line)
            found[str(document["transaction_id"])] = {
                "decision": str(document["decision"]),
                "score": float(document["score"]),
                "model_version": document.get("model_version"),
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path}:{number}: not a golden line (transaction_id, decision, score): {exc}"
            ) from None
    return found


def write_golden(scores: Mapping[str, Any] | Iterable[Any], path: Path) -> Path:
    """Write the answers as a golden file, one sorted line per transaction."""
    answers = _by_id(scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for transaction_id in sorted(answers):
        answer = _answer(answers[transaction_id])
        golden = {"transaction_id": transaction_id, "decision": answer["decision"]}
        golden["score"] = float(answer["score"])
        if answer.get("model_version") is not None:
            golden["model_version"] = answer["model_version"]
        lines.append(json.dumps(golden) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def assert_matches_golden(
    scores: Mapping[str, Any] | Iterable[Any],
    path: Path,
    tolerance: float = 1e-6,
    update: bool = False,
) -> None:
    """Fail with a readable diff unless `scores` match the golden file at `path`.

    `update=True` writes the file instead: review it and commit it. In pytest,
    `--fraudstream-update-golden` sets it (fixture `fraudstream_golden`). A missing file is
    written too, and the test fails once, so that nobody accepts a golden file unseen.
    """
    if update:
        write_golden(scores, path)
        return
    if not path.exists():
        write_golden(scores, path)
        raise GoldenMismatch(f"{path}: no golden file yet; wrote one: review it, commit it")
    diff = compare(_by_id(scores), read_golden(path), tolerance)
    if diff:
        raise GoldenMismatch(
            f"{path}: {diff.report()}\n(rerun with --fraudstream-update-golden to accept)"
        )


def _by_id(scores: Mapping[str, Any] | Iterable[Any]) -> Mapping[str, Any]:
    """transaction_id -> answer from a mapping (a `Scores`: first copy) or FraudScores."""
    if isinstance(scores, Mapping):
        return {t: a[0] if isinstance(a, tuple) else a for t, a in scores.items()}
    items: Iterable[Any] = scores
    return {score.transaction_id: score for score in items}


def _answer(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    return {
        "decision": value.decision,
        "score": value.score,
        "model_version": getattr(value, "model_version", None),
    }

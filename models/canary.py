"""Canary assignment: which users a challenger decides for, the same on every worker and offline.

A user's arm depends only on the rollout id and the `user_id`: a keyed hash (blake2b, not
Python's per-process `hash`) maps each pair to one of `BUCKETS` buckets, and the challenger
decides for the buckets below `share` percent. So every worker, a restarted one and
`fraudstream score --rollout` agree without talking to each other; raising the share from one
step to the next only moves users from the champion to the challenger, never back; and a new
rollout (a new id) draws a new sample of users.

>>> bucket("v2-canary1", "u1") == bucket("v2-canary1", "u1")
True
>>> assigner = Assigner("v2-canary1", 25.0)
>>> assigner.challenger_mask(["u1", "u2", "u1"]).tolist() == [
...     bucket("v2-canary1", u) < 2500 for u in ["u1", "u2", "u1"]
... ]
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.scoring import Scorer

BUCKETS = 10_000
"""Assignment resolution: shares are honoured to a hundredth of a percent."""
CACHE_USERS = 200_000
"""Users whose bucket an assigner remembers (a hash per user, computed once)."""


def bucket(rollout: str, user_id: str) -> int:
    """The user's bucket in `rollout`, in [0, BUCKETS)."""
    digest = hashlib.blake2b(
        user_id.encode(), digest_size=8, key=rollout.encode()[:64], person=b"fs-canary"
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def cutoff(share: float) -> int:
    """Buckets below this decide with the challenger (`share` in percent)."""
    return round(share * BUCKETS / 100.0)


def in_challenger(rollout: str, share: float, user_id: str) -> bool:
    """Whether `user_id` is in the challenger's arm at `share` percent of `rollout`."""
    return bucket(rollout, user_id) < cutoff(share)


@dataclass
class Assigner:
    """Arms for micro-batches of one rollout step; each user's bucket is hashed once."""

    rollout: str
    share: float
    _buckets: dict[str, int] = field(default_factory=dict, repr=False)

    def challenger_mask(self, user_ids: Sequence[str]) -> np.ndarray:
        """Per row, True where the challenger decides."""
        known = self._buckets
        if len(known) > CACHE_USERS:
            known.clear()
        rollout = self.rollout
        values = []
        for user in user_ids:
            found = known.get(user)
            if found is None:
                found = known[user] = bucket(rollout, user)
            values.append(found)
        return np.asarray(values, dtype=np.int64) < cutoff(self.share)


@dataclass
class Canary:
    """One step of a rollout as the scorer needs it: who decides, and with which model."""

    rollout: str
    step: int
    share: float
    challenger: Scorer
    assigner: Assigner = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.assigner = Assigner(self.rollout, self.share)

    def at_step(self, step: int, share: float) -> Canary:
        """The same rollout and challenger at another step (the users' buckets are kept)."""
        moved = Canary(self.rollout, step, share, self.challenger)
        moved.assigner._buckets = self.assigner._buckets
        return moved

"""The models a running worker scores with, swapped in place when a ModelUpdate arrives.

The registry is the truth and a ModelUpdate is the order to follow it: the worker loads the named
version, checks that its sha256 is the one announced (and the registry's own checksums), and
only then replaces the scorer. The swap happens between micro-batches, so every transaction is
scored once, by exactly one version, which its FraudScore names. A model that fails any check is
refused and the current one stays.

During a canary rollout the challenger decides for its share of users (`models.canary`); a
`canary` update sets or moves the step, `canary_rollback` ends it, and any change of champion
(the promotion that ends a successful rollout included) ends it too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from models.canary import Canary
from models.registry import ModelRegistry, Rollout
from models.scoring import Scorer
from schemas.errors import RegistryError
from schemas.events import ModelUpdate

log = logging.getLogger("fraudstream.worker.models")


@dataclass
class SwapCounts:
    applied: int = 0
    rejected: int = 0
    ignored: int = 0


class LiveModels:
    """Champion (decides), optional shadow (scored beside it) and optional canary (decides for
    a share of users) of one model name."""

    def __init__(self, registry: ModelRegistry, champion: Scorer | None = None) -> None:
        self.registry = registry
        self.champion = champion or Scorer.from_loaded(registry.load())
        shadow = registry.shadow()
        self.shadow = self._load(shadow) if shadow is not None else None
        self.canary: Canary | None = None
        rollout = registry.canary()
        self.canary = self._canary(rollout) if rollout is not None else None
        self.counts = SwapCounts()
        self.last_error: str | None = None

    def apply(self, update: ModelUpdate) -> str | None:
        """Obey one update; returns what changed (None if nothing did). Never raises on a bad
        model: the rejection is counted, logged and kept in `last_error`."""
        if update.model_name != self.registry.model_name:
            self.counts.ignored += 1
            return None
        try:
            change = self._apply(update)
        except RegistryError as exc:
            self.counts.rejected += 1
            self.last_error = str(exc)
            log.error(
                "refusing %s of %s %s: %s", update.action, update.model_name, update.version, exc
            )
            return None
        if change is None:
            self.counts.ignored += 1
        else:
            self.counts.applied += 1
            log.warning("model update: %s", change)
        return change

    def sync(self) -> list[str]:
        """Follow the registry directly (at start-up, after catching up on old updates)."""
        changes = []
        champion = self.registry.champion()
        if champion is not None and champion != self.champion.version:
            self.champion = self._load(champion)
            changes.append(f"champion {champion}")
        shadow = self.registry.shadow()
        current = self.shadow.version if self.shadow is not None else None
        if shadow != current:
            self.shadow = self._load(shadow) if shadow is not None else None
            changes.append(f"shadow {shadow}")
        rollout = self.registry.canary()
        here = self.canary
        if rollout is None and here is not None:
            self.canary = None
            changes.append(f"canary {here.rollout} ended")
        elif rollout is not None and (
            here is None or (here.rollout, here.step) != (rollout.rollout, rollout.step)
        ):
            self.canary = self._canary(rollout)
            changes.append(f"canary {rollout.rollout} step {rollout.step} ({rollout.share:g} %)")
        return changes

    def _canary(self, rollout: Rollout) -> Canary:
        here = self.canary
        if here is not None and here.rollout == rollout.rollout:
            return here.at_step(rollout.step, rollout.share)
        return Canary(rollout.rollout, rollout.step, rollout.share, self._load(rollout.version))

    def _apply(self, update: ModelUpdate) -> str | None:
        if update.action in ("canary", "canary_rollback"):
            return self._apply_canary(update)
        if update.action in ("promote", "rollback"):
            ended = self._end_canary()
            if update.version == self.champion.version:
                return ended
            previous = self.champion.version
            self.champion = self._load(update.version, update.sha256)
            if self.shadow is not None and self.shadow.version == update.version:
                self.shadow = None
            change = f"champion {previous} -> {update.version} ({update.action}: {update.reason})"
            return change if ended is None else f"{ended}; {change}"
        if update.action == "shadow":
            if self.shadow is not None and self.shadow.version == update.version:
                return None
            self.shadow = self._load(update.version, update.sha256)
            return f"shadow {update.version} ({update.reason})"
        if self.shadow is None:  # unshadow
            return None
        gone, self.shadow = self.shadow.version, None
        return f"shadow {gone} stopped ({update.reason})"

    def _apply_canary(self, update: ModelUpdate) -> str | None:
        plan, here = update.canary, self.canary
        if plan is None:
            raise RegistryError(f"{update.action} of {update.version} without its canary plan")
        if update.action == "canary_rollback":
            if here is None or here.rollout != plan.rollout:
                return None
            self.canary = None
            return f"canary {plan.rollout} rolled back: champion decides for all ({update.reason})"
        if here is not None and (here.rollout, here.step) == (plan.rollout, plan.step):
            return None
        if here is not None and here.rollout == plan.rollout:
            self.canary = here.at_step(plan.step, plan.share)
        else:
            challenger = self._load(update.version, update.sha256)
            self.canary = Canary(plan.rollout, plan.step, plan.share, challenger)
        if self.shadow is not None and self.shadow.version == update.version:
            self.shadow = None
        return (
            f"canary {plan.rollout} step {plan.step}: {update.version} decides for "
            f"{plan.share:g} % of users ({update.reason})"
        )

    def _end_canary(self) -> str | None:
        if self.canary is None:
            return None
        gone, self.canary = self.canary.rollout, None
        return f"canary {gone} ended"

    def _load(self, version: str, sha256: str | None = None) -> Scorer:
        loaded = self.registry.load(version)
        if sha256 is not None and loaded.info.sha256 != sha256:
            raise RegistryError(
                f"{loaded.info.path}: model sha256 {loaded.info.sha256} is not the announced "
                f"{sha256}; refusing it"
            )
        return Scorer.from_loaded(loaded)

"""Guardrails of a canary rollout: the live evidence of each step, and the verdict it supports.

Pure: fed the rollout's scores and the labels (in any order, repeats allowed), asked for a
verdict with the time now; no Kafka, no registry (`retrain.canary_runner` does that).

Every score of a rollout carries both opinions on its transaction: the deciding model's and the
other's (`FraudScore.canary.other`). So the two models are compared on *the same* traffic, at
any share (at 100 % too, where the champion's arm is empty): the share each would flag (review
capacity), the distance between their score distributions (two-sample Kolmogorov-Smirnov, from
scipy), and, once labels for the rollout's transactions arrive, the precision and recall of
each. Per arm (who actually decided) the evidence adds decisions, the flagged share, challenger
errors (its arm left to the champion) and the worker-side latency.

A step is judged once its challenger arm has decided `min_decisions` transactions: a breach
rolls back at once; without one, the step passes when it has also lasted `hold_s` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import orjson
from scipy import stats

from models.registry import Rollout


@dataclass(frozen=True)
class GuardrailConfig:
    """Limits a challenger must stay within on live traffic (the defaults live in the settings
    object, `Settings.canary_guardrails`)."""

    max_flag_ratio: float
    """The challenger may flag at most this multiple of the champion's share, ..."""
    flag_slack: float
    """... plus this absolute share (a champion flagging ~0 % leaves room for noise)."""
    max_ks: float
    """Largest KS distance between the two models' scores on the step's traffic."""
    max_error_share: float
    """Share of the challenger arm it failed to score (the champion decided instead)."""
    max_latency_p99_ms: float
    """p99 of worker-side latency in the challenger's arm."""
    min_labelled_frauds: int
    """Labelled frauds among the rollout's transactions before precision and recall count."""
    max_recall_drop: float
    max_precision_drop: float


@dataclass(frozen=True, slots=True)
class Observation:
    """What the guardrails need of one score of the rollout."""

    transaction_id: str
    step: int
    arm: Literal["champion", "challenger"]
    decided_score: float
    decided_flag: bool
    other_score: float | None
    other_flag: bool | None
    latency_ms: float
    fallback: bool

    @property
    def challenger_arm(self) -> bool:
        return self.arm == "challenger"

    def opinions(self) -> tuple[float, bool, float, bool] | None:
        """(champion score, flag, challenger score, flag) when both models gave one."""
        if self.other_score is None or self.other_flag is None:
            return None
        if self.challenger_arm:
            return self.other_score, self.other_flag, self.decided_score, self.decided_flag
        return self.decided_score, self.decided_flag, self.other_score, self.other_flag

    @staticmethod
    def from_json(value: bytes, rollout: str) -> Observation | None:
        """A published score's fields, or None if it is not of `rollout` (or unreadable)."""
        try:
            data = orjson.loads(value)
            canary = data.get("canary")
            if not canary or canary.get("rollout") != rollout:
                return None
            other = canary.get("other")
            return Observation(
                transaction_id=str(data["transaction_id"]),
                step=int(canary["step"]),
                arm="challenger" if canary["arm"] == "challenger" else "champion",
                decided_score=float(data["score"]),
                decided_flag=data["decision"] != "approve",
                other_score=float(other["score"]) if other else None,
                other_flag=other["decision"] != "approve" if other else None,
                latency_ms=float(data.get("latency_ms", 0.0)),
                fallback=bool(canary.get("fallback", False)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@dataclass
class _Step:
    """One step's observations, as columns."""

    arm_decisions: dict[str, int] = field(default_factory=lambda: {"champion": 0, "challenger": 0})
    arm_flagged: dict[str, int] = field(default_factory=lambda: {"champion": 0, "challenger": 0})
    champion_scores: list[float] = field(default_factory=list)
    challenger_scores: list[float] = field(default_factory=list)
    champion_flags: int = 0
    challenger_flags: int = 0
    fallbacks: int = 0
    challenger_latency: list[float] = field(default_factory=list)

    def add(self, obs: Observation) -> None:
        self.arm_decisions[obs.arm] += 1
        self.arm_flagged[obs.arm] += obs.decided_flag
        if obs.challenger_arm:
            self.fallbacks += obs.fallback
            self.challenger_latency.append(obs.latency_ms)
        both = obs.opinions()
        if both is not None:
            self.champion_scores.append(both[0])
            self.champion_flags += both[1]
            self.challenger_scores.append(both[2])
            self.challenger_flags += both[3]


@dataclass(frozen=True)
class Verdict:
    """What the evidence supports now: move on, promote (last step passed), or roll back."""

    action: Literal["advance", "promote", "rollback"]
    reason: str
    evidence: dict[str, float]


def epoch_s(text: str) -> float:
    """Registry timestamps (RFC 3339) as Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class CanaryGuard:
    """The evidence of one rollout and the verdict on its current step (see the module)."""

    def __init__(self, rollout: Rollout, config: GuardrailConfig) -> None:
        self.rollout = rollout
        self.config = config
        self._steps: dict[int, _Step] = {}
        self._seen: set[str] = set()
        self._opinions: dict[str, tuple[str, bool, bool]] = {}
        """transaction id -> (arm, champion flagged, challenger flagged), for the labels."""
        self._labels: dict[str, bool] = {}
        self.repeats = 0

    def follow(self, rollout: Rollout) -> None:
        """The registry moved the rollout (to its next step); the evidence is kept."""
        if rollout.rollout != self.rollout.rollout:
            raise ValueError(f"guard of {self.rollout.rollout} cannot follow {rollout.rollout}")
        self.rollout = rollout

    def add_score(self, obs: Observation) -> None:
        if obs.transaction_id in self._seen:
            self.repeats += 1  # a worker restart publishes identical copies
            return
        self._seen.add(obs.transaction_id)
        self._steps.setdefault(obs.step, _Step()).add(obs)
        both = obs.opinions()
        if both is not None:
            self._opinions[obs.transaction_id] = (obs.arm, both[1], both[3])

    def add_label(self, transaction_id: str, is_fraud: bool) -> None:
        self._labels[transaction_id] = is_fraud

    def decisions(self, step: int | None = None) -> dict[str, int]:
        found = self._steps.get(self.rollout.step if step is None else step, _Step())
        return dict(found.arm_decisions)

    # -- the verdict -------------------------------------------------------------------------
    def verdict(self, now_s: float) -> Verdict | None:
        """The decision the current step's evidence supports at `now_s` (Unix seconds), or None
        while it is not enough yet."""
        rollout = self.rollout
        step = self._steps.get(rollout.step, _Step())
        evidence = self.evidence(now_s)
        if step.arm_decisions["challenger"] < max(1, rollout.min_decisions):
            return None
        breaches = self.breaches(evidence)
        label = f"step {rollout.step + 1}/{len(rollout.steps)} ({rollout.share:g} %)"
        if breaches:
            return Verdict("rollback", f"{label} breached: " + "; ".join(breaches), evidence)
        if evidence["step_seconds"] < rollout.hold_s:
            return None
        passed = (
            f"{label} passed after {evidence['step_seconds']:.0f} s and "
            f"{step.arm_decisions['challenger']} challenger decisions"
        )
        if rollout.last_step:
            return Verdict("promote", f"rollout {rollout.rollout}: {passed}", evidence)
        return Verdict("advance", passed, evidence)

    def evidence(self, now_s: float) -> dict[str, float]:
        """The current step's numbers, and the labelled quality over the whole rollout."""
        rollout = self.rollout
        step = self._steps.get(rollout.step, _Step())
        paired = len(step.champion_scores)
        found: dict[str, float] = {
            "step": float(rollout.step),
            "share": rollout.share,
            "step_seconds": max(0.0, now_s - epoch_s(rollout.step_started_at)),
            "paired": float(paired),
        }
        for arm in ("champion", "challenger"):
            n = step.arm_decisions[arm]
            found[f"decisions_{arm}_arm"] = float(n)
            if n:
                found[f"flagged_share_{arm}_arm"] = step.arm_flagged[arm] / n
        if paired:
            found["flagged_share_champion"] = step.champion_flags / paired
            found["flagged_share_challenger"] = step.challenger_flags / paired
        if paired >= 2:
            ks = stats.ks_2samp(step.challenger_scores, step.champion_scores)
            found["ks_statistic"] = float(ks.statistic)
            found["ks_pvalue"] = float(ks.pvalue)
        challenger_n = step.arm_decisions["challenger"]
        if challenger_n:
            found["challenger_errors"] = float(step.fallbacks)
            found["challenger_error_share"] = step.fallbacks / challenger_n
            found["latency_p99_ms_challenger_arm"] = float(
                np.percentile(step.challenger_latency, 99)
            )
        found |= self._quality()
        return found

    def breaches(self, evidence: dict[str, float]) -> list[str]:
        """Each guardrail the evidence breaks, said with its numbers."""
        config = self.config
        out: list[str] = []
        champion = evidence.get("flagged_share_champion")
        challenger = evidence.get("flagged_share_challenger")
        if champion is not None and challenger is not None:
            limit = champion * config.max_flag_ratio + config.flag_slack
            if challenger > limit:
                out.append(
                    f"flagged share {challenger:.3f} vs the champion's {champion:.3f} on the "
                    f"same {evidence['paired']:.0f} transactions (limit {limit:.3f} = "
                    f"{config.max_flag_ratio:g} x + {config.flag_slack:g})"
                )
        ks = evidence.get("ks_statistic")
        if ks is not None and ks > config.max_ks:
            out.append(f"score distribution shift: KS {ks:.3f} > {config.max_ks:g}")
        errors = evidence.get("challenger_error_share")
        if errors is not None and errors > config.max_error_share:
            out.append(
                f"challenger errors: {evidence['challenger_errors']:.0f} of its arm's "
                f"decisions ({errors:.4f} > {config.max_error_share:g})"
            )
        latency = evidence.get("latency_p99_ms_challenger_arm")
        if latency is not None and latency > config.max_latency_p99_ms:
            out.append(f"latency p99 {latency:.0f} ms > {config.max_latency_p99_ms:g} ms")
        if evidence.get("labelled_frauds", 0.0) >= config.min_labelled_frauds:
            for name, drop in (
                ("recall", config.max_recall_drop),
                ("precision", config.max_precision_drop),
            ):
                ours = evidence.get(f"{name}_challenger")
                theirs = evidence.get(f"{name}_champion")
                if ours is not None and theirs is not None and ours < theirs - drop:
                    out.append(
                        f"{name} {ours:.3f} vs the champion's {theirs:.3f} on "
                        f"{evidence['labelled']:.0f} labelled transactions (may drop {drop:g})"
                    )
        return out

    def _quality(self) -> dict[str, float]:
        """Precision and recall of both models over the rollout's labelled transactions (paired),
        and per arm of the deciding model."""
        counts: dict[str, list[int]] = {}  # name -> [true positives, flagged, frauds]
        labelled = 0
        for transaction_id, is_fraud in self._labels.items():
            found = self._opinions.get(transaction_id)
            if found is None:
                continue
            labelled += 1
            arm, champion_flag, challenger_flag = found
            decided = challenger_flag if arm == "challenger" else champion_flag
            for name, flag in (
                ("champion", champion_flag),
                ("challenger", challenger_flag),
                (f"{arm}_arm", decided),
            ):
                tally = counts.setdefault(name, [0, 0, 0])
                tally[0] += flag and is_fraud
                tally[1] += flag
                tally[2] += is_fraud
        out: dict[str, float] = {"labelled": float(labelled)}
        if not labelled:
            return out
        out["labelled_frauds"] = float(counts["champion"][2])
        for name, (tp, flagged, frauds) in counts.items():
            if flagged:
                out[f"precision_{name}"] = tp / flagged
            if frauds:
                out[f"recall_{name}"] = tp / frauds
        return out

    def summary(self) -> dict[str, Any]:
        """Every step's decisions per arm (for logs and `models show`)."""
        return {
            str(n): {"decisions": dict(s.arm_decisions), "flagged": dict(s.arm_flagged)}
            for n, s in sorted(self._steps.items())
        }

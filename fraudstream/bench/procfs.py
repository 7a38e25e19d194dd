"""Memory and CPU of processes, from Linux's /proc (no dependency, no sampling thread).

CPU is read as utime + stime before and after a window, per process, next to the machine's
total busy time (/proc/stat): on a shared 2-core machine the broker, the load generator and
every worker compete for the same cores, and other people's work shows up as "rest".
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process from /proc (None if gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse_stat_cpu(stat: str) -> float:
    """utime + stime in seconds from the text of /proc/PID/stat."""
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used so far (None if gone)."""
    try:
        return parse_stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def parse_machine_cpu(stat: str) -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores from the text of /proc/stat."""
    first = stat.splitlines()[0].split()
    if first[0] != "cpu":
        raise ValueError("not /proc/stat")
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICKS, sum(ticks) / _TICKS


def machine_cpu() -> tuple[float, float] | None:
    try:
        return parse_machine_cpu(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def memory_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class CpuWindow:
    """CPU used by named processes (and the rest of the machine) between `start` and `stop`."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._cpu: dict[str, float | None] = {}
        self._machine: tuple[float, float] | None = None
        self._began = 0.0

    def start(self) -> CpuWindow:
        self._began = time.monotonic()
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._began
        processes: dict[str, dict[str, float | None]] = {}
        ours = 0.0
        for name, pid in self.pids.items():
            before, after = self._cpu.get(name), cpu_seconds(pid)
            used = None if before is None or after is None else after - before
            ours += used or 0.0
            processes[name] = {
                "cpu_s": None if used is None else round(used, 2),
                "cores": None if used is None or wall <= 0 else round(used / wall, 2),
            }
        result: dict[str, Any] = {"wall_s": round(wall, 2), "processes": processes}
        now = machine_cpu()
        if self._machine is not None and now is not None and wall > 0:
            busy = now[0] - self._machine[0]
            result["machine_busy_cores"] = round(busy / wall, 2)
            result["rest_of_machine_cores"] = round(max(0.0, busy - ours) / wall, 2)
        return result

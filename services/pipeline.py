"""Runs the three services as child processes, as ``eraser run``, the demo and the tests do.

Each service is its own process, exactly as in production (one container each), so a crash or a
SIGKILL of one is isolated and the others carry on. Stopping sends SIGTERM and waits for the clean
shutdown (batch finished, flushed, committed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from services.shared.config import (
    ActionsSettings,
    IngestSettings,
    MatcherSettings,
    ServiceSettings,
)

SERVICES = ("ingest", "matcher", "actions")
# Ingest processes on one host step by 10 from the first one's port (9101, 9111, 9121, ...), so
# however many there are, none lands on another service's port (matcher 9102, actions 9103).
INGEST_PORT_STEP = 10
_SETTINGS: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "matcher": MatcherSettings,
    "actions": ActionsSettings,
}


def instances(ingest: int = 1) -> tuple[str, ...]:
    """Process names for ``ingest`` ingest processes (ingest, ingest-2, ...), matcher, actions."""
    return ("ingest", *(f"ingest-{n}" for n in range(2, ingest + 1)), "matcher", "actions")


def http_ports(names: Iterable[str], env: Mapping[str, str]) -> dict[str, int]:
    """The port each process serves /metrics, /healthz and /readyz on (0: none)."""
    ports = {}
    for name in names:
        service, _, number = name.partition("-")
        variable = f"ERASER_{service.upper()}_HTTP_PORT"
        port = int(env.get(variable, _SETTINGS[service].model_fields["http_port"].default))
        ports[name] = port + INGEST_PORT_STEP * (int(number) - 1) if number and port else port
    return ports


def port_problems(ports: Mapping[str, int]) -> list[str]:
    """One line per port two processes would share or another program already holds."""
    problems = []
    shared = Counter(port for port in ports.values() if port)
    for port, count in sorted(shared.items()):
        names = [name for name, p in ports.items() if p == port]
        if count > 1:
            problems.append(
                f"port {port}: {' and '.join(names)} would both serve on it; give each service "
                "its own ERASER_<SERVICE>_HTTP_PORT"
            )
        elif not _free(port):
            service = names[0].partition("-")[0].upper()
            problems.append(
                f"port {port} ({names[0]}) is held by another program: stop it, or set "
                f"ERASER_{service}_HTTP_PORT to a free port"
            )
    return problems


def _free(port: int) -> bool:
    """Whether a service could bind ``port`` (as it will: every address, address reuse on)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class Pipeline:
    """The ingest, matcher and actions processes, started with a shared environment."""

    def __init__(
        self,
        env: Mapping[str, str],
        services: tuple[str, ...] = SERVICES,
        log_dir: Path | None = None,
    ) -> None:
        self._env = dict(env)
        self._services = services
        self._log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self) -> Pipeline:
        """Start every service that is not running."""
        for name in self._services:
            if name not in self.processes or self.processes[name].poll() is not None:
                self.processes[name] = self._spawn(name)
        return self

    def restart(self, name: str) -> None:
        """Start ``name`` again (after it died or was killed)."""
        self.processes[name].wait()
        self.processes[name] = self._spawn(name)

    def kill(self, name: str) -> None:
        """SIGKILL one service: no clean shutdown, no commit."""
        self.processes[name].kill()
        self.processes[name].wait()

    def exited(self) -> dict[str, int]:
        """Services that have exited, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self, timeout_s: float = 15.0) -> dict[str, int]:
        """SIGTERM every service, wait for clean exits (SIGKILL stragglers); the exit codes."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()
        return codes

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        output: IO[bytes] | None = None
        if self._log_dir is not None:
            output = open(self._log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(output)
        service = name.partition("-")[0]
        env = {**os.environ, **self._env}
        env[f"ERASER_{service.upper()}_HTTP_PORT"] = str(http_ports([name], env)[name])
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )

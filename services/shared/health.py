"""Liveness and readiness of a service, and the HTTP endpoint that serves them beside /metrics.

The consume loop feeds :class:`Health` from its own thread: a heartbeat per iteration, the moment
the brokers last answered, the partitions it holds. A service adds its own readiness conditions
(the matcher: its index is in step with the registry). Kubernetes probes ``/healthz`` (restart a
wedged process) and ``/readyz`` (count the replica as available).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from itertools import groupby
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

Check = tuple[str, Callable[[], bool]]


class Health:
    """What /healthz and /readyz answer; written by the loop's thread, read by the HTTP thread."""

    def __init__(
        self,
        liveness_timeout_s: float = 120.0,
        connected_within_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._liveness_timeout_s = liveness_timeout_s
        self._connected_within_s = connected_within_s
        self._clock = clock
        self._checks: list[Check] = []
        self._state = "starting"
        self._beat: float | None = None
        self._answered: float | None = None
        self._assigned = "none"

    def require(self, why_not: str, check: Callable[[], bool]) -> None:
        """Readiness also needs ``check()`` to hold; ``why_not`` is shown while it does not."""
        self._checks.append((why_not, check))

    def running(self) -> None:
        """The consume loop has started."""
        self._state = "running"
        self.beat()

    def stopping(self) -> None:
        """The consume loop is finishing: not ready, and no longer expected to beat."""
        self._state = "stopping"

    def beat(self) -> None:
        """The consume loop has completed an iteration."""
        self._beat = self._clock()

    def broker_answered(self) -> None:
        """The brokers have just answered a request."""
        self._answered = self._clock()

    def assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        """The input partitions the group has given this process, for the /readyz body."""
        by_topic = groupby(sorted(partitions), key=lambda tp: tp[0])
        described = [f"{topic}[{','.join(str(p) for _, p in tps)}]" for topic, tps in by_topic]
        self._assigned = " ".join(described) or "none"

    def liveness(self) -> tuple[bool, str]:
        """Whether the process is alive: once started, its consume loop keeps completing iterations.

        Before the loop starts (the matcher replays the registry first) there is nothing to watch.
        """
        if self._state != "running" or self._beat is None:
            return True, "alive"
        silent = self._clock() - self._beat
        if silent > self._liveness_timeout_s:
            return False, f"the consume loop has not completed an iteration for {silent:.0f} s"
        return True, "alive"

    def readiness(self) -> tuple[bool, str]:
        """Whether the service is ready, and a body saying why not and what it holds."""
        problems = [] if self._state == "running" else [self._state]
        if self._answered is None:
            problems.append("the brokers have not answered yet")
        elif (silent := self._clock() - self._answered) > self._connected_within_s:
            problems.append(f"the brokers have not answered for {silent:.0f} s")
        problems += [why_not for why_not, check in self._checks if not check()]
        summary = "; ".join(problems) or "ready"
        return not problems, f"{summary}\nassigned: {self._assigned}"


def serve(port: int, registry: CollectorRegistry, health: Health) -> WSGIServer | None:
    """Serve /metrics, /healthz and /readyz on ``port`` in a daemon thread (0 = do not serve)."""
    if port == 0:
        return None
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, body = health.liveness() if path == "/healthz" else health.readiness()
            return _plain(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        return list(metrics_app(environ, start_response))

    server = make_server("0.0.0.0", port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _plain(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


class _QuietHandler(WSGIRequestHandler):
    """Scrapes arrive every few seconds; they are not worth a log line each."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

"""Prometheus metrics, one container per service, and the HTTP endpoint that serves them.

Names follow ``eraser_<service>_<noun>_<unit>``. Label values come from small fixed sets (outcome,
stage, signal, error class, bank); ids and hashes never become labels. Every known label value is
initialised at start, so a dashboard sees zeros rather than missing series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from services.shared import errors

# Latency buckets from 1 ms to 10 s: the interesting range for per-upload work.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEAD_LETTER_REASONS = tuple(
    cls.__name__
    for cls in (
        errors.MalformedEventError,
        errors.UnsupportedEventError,
        errors.MediaRejectedError,
        errors.MediaUndecodableError,
        errors.FetchFailedError,
    )
)


class ServiceMetrics:
    """What every service reports: consumption, production, batches, dead letters, lag."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = f"eraser_{service}"
        self.consumed = Counter(
            f"{prefix}_events_consumed",
            "Records consumed, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.produced = Counter(
            f"{prefix}_events_produced",
            "Records produced, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            f"{prefix}_dead_letters",
            "Records sent to the dead-letter topic, by error class.",
            ["reason"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{prefix}_batch_seconds",
            "Time to process one polled batch, produce its output and commit.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            f"{prefix}_stage_seconds",
            "Time spent per stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            f"{prefix}_consumer_lag_messages",
            "Messages behind the end of each assigned input partition.",
            ["partition"],
            registry=self.registry,
        )
        _initialise(self.consumed, ["ok", "dead_lettered"])
        _initialise(self.dead_letters, DEAD_LETTER_REASONS)

    def init_stages(self, stages: Iterable[str]) -> None:
        """Create the per-stage series up front."""
        _initialise(self.stage_seconds, stages)

    def init_produced(self, kinds: Iterable[str]) -> None:
        """Create the per-kind produced series up front."""
        _initialise(self.produced, kinds)


class Health:
    """Liveness and readiness, set by the service and read by the HTTP endpoint."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._why_not = "starting"

    def set_ready(self, ready: bool, why_not: str = "") -> None:
        """Mark the service ready, or not ready with a reason."""
        self._why_not = why_not
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    def readiness(self) -> tuple[bool, str]:
        """Whether the service is ready, and if not, why."""
        return self._ready.is_set(), self._why_not


def serve(port: int, registry: CollectorRegistry, health: Health) -> WSGIServer | None:
    """Serve /metrics, /healthz and /readyz on ``port`` in a daemon thread (0 = do not serve)."""
    if port == 0:
        return None
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _plain(start_response, "200 OK", "ok")
        if path == "/readyz":
            ready, why_not = health.readiness()
            return _plain(
                start_response,
                "200 OK" if ready else "503 Service Unavailable",
                "ready" if ready else why_not,
            )
        return list(metrics_app(environ, start_response))

    server = make_server("0.0.0.0", port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _plain(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


def _initialise(metric: Counter | Gauge | Histogram, values: Iterable[str]) -> None:
    for value in values:
        metric.labels(value)


class _QuietHandler(WSGIRequestHandler):
    """Scrapes arrive every few seconds; they are not worth a log line each."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


class IngestMetrics(ServiceMetrics):
    """Ingest: fetching, decoding and hashing."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("ingest", registry)
        self.fetched_bytes = Counter(
            "eraser_ingest_fetched_bytes",
            "Media bytes fetched, by source.",
            ["source"],
            registry=self.registry,
        )
        self.fetch_errors = Counter(
            "eraser_ingest_fetch_errors",
            "Media that could not be fetched, by error class.",
            ["kind"],
            registry=self.registry,
        )
        self.init_stages(["fetch", "decode", "hash"])
        self.init_produced(["hashes", "verdict", "dlq"])
        _initialise(self.fetched_bytes, ["inline", "file", "http"])
        _initialise(self.fetch_errors, ["MediaRejectedError", "FetchFailedError"])


class MatcherMetrics(ServiceMetrics):
    """Matcher: the registry, the index and the verdicts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("matcher", registry)
        self.verdicts = Counter(
            "eraser_matcher_verdicts",
            "Verdicts issued, by kind.",
            ["verdict"],
            registry=self.registry,
        )
        self.matches = Counter(
            "eraser_matcher_matches",
            "Matches found, by bank and signal.",
            ["bank", "signal"],
            registry=self.registry,
        )
        self.upload_to_verdict_seconds = Histogram(
            "eraser_matcher_upload_to_verdict_seconds",
            "Time from the upload event's time to its verdict.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_entries = Gauge(
            "eraser_matcher_index_entries",
            "Registered entries held, by signal.",
            ["signal"],
            registry=self.registry,
        )
        self.registry_records = Counter(
            "eraser_matcher_registry_records",
            "Registry records read, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.registry_behind = Gauge(
            "eraser_matcher_registry_behind_messages",
            "Registry records not yet applied to the index.",
            registry=self.registry,
        )
        self.registry_lag_seconds = Gauge(
            "eraser_matcher_registry_lag_seconds",
            "While behind the registry topic, the age of the newest record applied; else 0.",
            registry=self.registry,
        )
        self.init_stages(["search"])
        self.init_produced(["verdict", "dlq"])
        _initialise(self.verdicts, ["clean", "match", "error"])
        _initialise(self.index_entries, ["pdq", "sha256", "md5", "embedding"])
        _initialise(self.registry_records, ["registered", "withdrawn", "rejected"])


class ActionsMetrics(ServiceMetrics):
    """Actions: decisions under bank policy."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("actions", registry)
        self.actions = Counter(
            "eraser_actions_actions",
            "Actions published, by action.",
            ["action"],
            registry=self.registry,
        )
        self.repeats_dropped = Counter(
            "eraser_actions_repeats_dropped",
            "Actions not published again because the same action id was already published.",
            registry=self.registry,
        )
        self.suppressed = Counter(
            "eraser_actions_suppressed",
            "Match verdicts not acted on because the upload matched a negative bank.",
            registry=self.registry,
        )
        self.init_produced(["action", "dlq"])
        _initialise(self.actions, ["remove", "hide", "review"])

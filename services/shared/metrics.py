"""Prometheus metrics, one container per service (served by :mod:`services.shared.health`).

Names follow ``eraser_<service>_<noun>_<unit>``, and every series also carries ``service``, so alert
rules can group by service whatever the scrape job is called. Label values come from small fixed
sets (outcome, stage, signal, error class, bank, partition); ids and hashes never become labels.
Every known label value is initialised at start, so a dashboard sees zeros, not missing series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from services.shared import errors
from services.shared.schemas import Signal

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
VERDICTS = ("clean", "match", "error")
SIGNALS: tuple[str, ...] = get_args(Signal)


class ServiceMetrics:
    """What every service reports: consumption, production, batches, dead letters, lag."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # What /metrics serves: every series of the registry, labelled with the service.
        self.exported = CollectorRegistry()
        self.exported.register(_ServiceLabel(self.registry, service))
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
            "Messages behind the end of each input partition this process holds.",
            ["topic", "partition"],
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


def verdicts_counter(service: str, registry: CollectorRegistry) -> Counter:
    """``eraser_<service>_verdicts_total{verdict}``, counted wherever verdicts are issued.

    The matcher issues every kind; ingest issues ``error`` verdicts for uploads it cannot scan.
    Summed over both, it is one verdict per upload.
    """
    counter = Counter(
        f"eraser_{service}_verdicts", "Verdicts issued, by kind.", ["verdict"], registry=registry
    )
    _initialise(counter, VERDICTS)
    return counter


def _initialise(metric: Counter | Gauge | Histogram, values: Iterable[str]) -> None:
    for value in values:
        metric.labels(value)


class _ServiceLabel(Collector):
    """Adds ``service`` to every sample of a registry: rules need not rely on scrape job names."""

    def __init__(self, source: CollectorRegistry, service: str) -> None:
        self._source = source
        self._service = service

    def collect(self) -> Iterator[Metric]:
        """The source's metrics, each sample with ``service`` added."""
        for family in self._source.collect():
            family.samples = [
                sample._replace(labels={**sample.labels, "service": self._service})
                for sample in family.samples
            ]
            yield family


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
        self.video_cpu_seconds = Counter(
            "eraser_ingest_video_cpu_seconds",
            "CPU time spent decoding and hashing videos (per second of video: divide by "
            "eraser_ingest_video_decoded_seconds).",
            registry=self.registry,
        )
        self.video_decoded_seconds = Counter(
            "eraser_ingest_video_decoded_seconds",
            "Seconds of video decoded and hashed.",
            registry=self.registry,
        )
        self.verdicts = verdicts_counter("ingest", self.registry)
        self.init_stages(["fetch", "decode", "hash", "video"])
        self.init_produced(["hashes", "verdict", "dlq"])
        _initialise(self.fetched_bytes, ["inline", "file", "http"])
        _initialise(self.fetch_errors, ["MediaRejectedError", "FetchFailedError"])


class MatcherMetrics(ServiceMetrics):
    """Matcher: the registry, the index and the verdicts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("matcher", registry)
        self.verdicts = verdicts_counter("matcher", self.registry)
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
        self.index_behind_seconds = Gauge(
            "eraser_matcher_index_behind_seconds",
            "Seconds since the index last held everything on the registry topic (at scrape time).",
            registry=self.registry,
        )
        self.init_stages(["search", "verify"])
        self.init_produced(["verdict", "dlq"])
        _initialise(self.index_entries, SIGNALS)
        _initialise(self.registry_records, ["registered", "withdrawn", "rejected"])

    def init_matches(self, banks: Iterable[str]) -> None:
        """Create the per-bank, per-signal match series up front."""
        for bank in banks:
            for signal in SIGNALS:
                self.matches.labels(bank, signal)

    def follow_index(self, seconds_behind: Callable[[], float]) -> None:
        """Compute the index's seconds behind the registry at each scrape, so it cannot freeze."""
        self.index_behind_seconds.set_function(seconds_behind)


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
        self.init_produced(["action", "review", "dlq"])
        _initialise(self.actions, ["remove", "hide", "review"])

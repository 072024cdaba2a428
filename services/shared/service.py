"""Starting and stopping a service: signals, the HTTP endpoint, the clients and the loop.

Each service's ``__main__`` builds its settings and processor, then hands them to
:func:`run_service`. SIGTERM or SIGINT set the stop event; the loop finishes its batch, flushes,
commits and closes, and the process exits 0. A crash exits non-zero without committing.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import faiss
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.shared.config import ServiceSettings, explain
from services.shared.health import Check, Health, serve
from services.shared.kafka import ConsumeLoop, Processor, make_consumer, make_producer
from services.shared.metrics import ServiceMetrics

log = logging.getLogger(__name__)
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_type: type[SettingsT]) -> SettingsT:
    """Read settings from the environment, or exit 2 naming each variable that is wrong."""
    try:
        return settings_type()
    except ValidationError as error:
        # Plain lines, not JSON log records: a person reads these, at a terminal or in kubectl logs.
        print("\n".join(explain(error)), file=sys.stderr)
        raise SystemExit(2) from None


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set."""
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        log.info("stop requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


class Stopping:
    """When a service stops: on SIGTERM or SIGINT, or when a background thread fails.

    ``event`` is set either way; ``failures`` holds what failed, so the process exits 1.
    """

    def __init__(self) -> None:
        self.event = stop_on_signals()
        self.failures: list[BaseException] = []

    def fail(self, error: BaseException) -> None:
        """Record a background thread's failure and stop the service."""
        self.failures.append(error)
        self.event.set()


def run_service(
    *,
    service: str,
    settings: ServiceSettings,
    processor: Processor[Any],
    metrics: ServiceMetrics,
    input_topics: Sequence[str],
    dlq_topic: str,
    stop: threading.Event,
    ready_when: Sequence[Check] = (),
    before_consuming: Callable[[], bool] | None = None,
) -> int:
    """Run ``processor`` until stopped; the process exit code.

    Readiness needs the loop running, the brokers answering, and each of ``ready_when``.
    """
    # One FAISS thread per process: OpenMP threads on shared cores cost far more than they give.
    faiss.omp_set_num_threads(1)
    health = Health(liveness_timeout_s=settings.liveness_bound_s())
    for why_not, check in ready_when:
        health.require(why_not, check)
    server = serve(settings.http_port, metrics.exported, health)
    try:
        if before_consuming is not None and not before_consuming():
            return 0 if stop.is_set() else 1
        loop = ConsumeLoop(
            service=service,
            consumer=make_consumer(
                settings.kafka, settings.group_id, settings.batch_size, settings.fetch_max_wait_ms
            ),
            producer=make_producer(settings.kafka),
            processor=processor,
            topics=input_topics,
            dlq_topic=dlq_topic,
            metrics=metrics,
            health=health,
            stop=stop,
            flush_timeout_s=settings.kafka.produce_timeout_ms / 1000,
            commit_interval_s=settings.kafka.commit_interval_ms / 1000,
        )
        log.info(
            "consuming",
            extra={"fields": {"topics": list(input_topics), "group": settings.group_id}},
        )
        loop.run()
        log.info("stopped cleanly")
        return 0
    finally:
        if server is not None:
            server.shutdown()

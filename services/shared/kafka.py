"""The consume → process → produce → commit loop, written once for all three services.

Each record's outputs are sent as soon as they exist (a batch's first verdict need not wait for
its last scan), and offsets are committed by hand, only after every record a batch produced has
been acknowledged by the broker, so a crash at any point means the batch is read again
(at-least-once; repeated outputs carry the same CloudEvent id). A record that can never be
processed goes to the service's dead-letter topic with the reason in its headers; anything
unexpected stops the loop without a commit, and so does a flush the brokers do not acknowledge in
time. SIGTERM lets the current batch finish, flush and commit before the clients close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.producer.future import FutureRecordMetadata

from services.shared.config import KafkaSettings
from services.shared.errors import PoisonError
from services.shared.health import Health
from services.shared.metrics import ServiceMetrics
from services.shared.partitions import PendingOffsets, Probe, Rebalance
from services.shared.schemas import CloudEvent, DataT, encode, now, parse_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """A record to produce; ``kind`` names it for metrics (verdict, action, dlq, ...)."""

    topic: str
    key: bytes | None
    value: bytes | None
    kind: str
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    @classmethod
    def event(cls, topic: str, key: str, event: CloudEvent[Any], kind: str) -> Outgoing:
        """An outgoing CloudEvent, keyed by ``key``."""
        return cls(topic=topic, key=key.encode(), value=encode(event), kind=kind)


Result = list[Outgoing] | PoisonError
"""What processing one event gave: records to produce, or the reason it can never succeed."""


class Processor(Protocol, Generic[DataT]):
    """A service's logic, as the loop sees it; it never touches Kafka."""

    model: type[DataT]

    def process(self, events: Sequence[CloudEvent[DataT]]) -> Iterable[Result]:
        """Process valid events; one result per event, in order (lazily, if it can)."""

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """Records to produce besides the dead letter (an error verdict, say)."""


def dead_letter(record: ConsumerRecord, error: PoisonError, topic: str, service: str) -> Outgoing:
    """The original record, unchanged, with the reason and its origin in the headers."""
    headers = (
        *(
            (name, value)
            for name, value in (record.headers or [])
            if not name.startswith("eraser-")
        ),
        ("eraser-error-class", error.kind.encode()),
        ("eraser-error-reason", error.reason.encode()),
        ("eraser-source-topic", record.topic.encode()),
        ("eraser-source-partition", str(record.partition).encode()),
        ("eraser-source-offset", str(record.offset).encode()),
        ("eraser-service", service.encode()),
        ("eraser-failed-at", now().isoformat().encode()),
    )
    return Outgoing(topic, record.key, record.value, "dlq", headers)


def make_consumer(
    kafka: KafkaSettings, group_id: str, batch_size: int, fetch_max_wait_ms: int | None = None
) -> KafkaConsumer:
    """A group consumer with manual commits, reading from the start when the group is new.

    The :class:`ConsumeLoop` subscribes it, with its rebalance listener.
    """
    return KafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms
        if fetch_max_wait_ms is None
        else fetch_max_wait_ms,
        **kafka.client_options(),
    )


def make_producer(kafka: KafkaSettings) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas, and not forever to send."""
    return KafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        # send() may wait this long for metadata or buffer space; the loop's flush waits as long.
        max_block_ms=kafka.produce_timeout_ms,
        max_request_size=8 * 1024 * 1024,
        **kafka.client_options(),
    )


class ConsumeLoop(Generic[DataT]):
    """Runs a :class:`Processor` over a consumer until stopped."""

    def __init__(
        self,
        *,
        service: str,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        processor: Processor[DataT],
        topics: Sequence[str],
        dlq_topic: str,
        metrics: ServiceMetrics,
        health: Health,
        stop: threading.Event,
        flush_timeout_s: float,
        commit_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._consumer = consumer
        self._producer = producer
        self._processor = processor
        self._topics = list(topics)
        self._dlq_topic = dlq_topic
        self._metrics = metrics
        self._health = health
        self._stop = stop
        self._flush_timeout_s = flush_timeout_s
        self._commit_interval_s = commit_interval_s
        self._clock = clock
        self._committed_at = float("-inf")
        self._processed_since_commit = False
        self._pending = PendingOffsets()
        self._probe = Probe(consumer, self._topics, metrics, health)

    def run(self) -> None:
        """Poll, process, produce, flush and commit until the stop event is set."""
        self._consumer.subscribe(
            self._topics, listener=Rebalance(self._consumer, self._pending, self._probe)
        )
        self._health.running()
        try:
            while not self._stop.is_set():
                self._probe.maybe()
                records = self._poll()
                if records:
                    started = time.perf_counter()
                    self._flush(self._handle(records))
                    self._pending.advance(records)
                    self._processed_since_commit = True
                    self._metrics.batch_seconds.observe(time.perf_counter() - started)
                self._commit()
                self._health.beat()
        finally:
            self._health.stopping()
            self._close()

    def _poll(self) -> list[ConsumerRecord]:
        batches = self._consumer.poll(timeout_ms=100)
        return [record for tp in sorted(batches) for record in batches[tp]]

    def _handle(self, records: list[ConsumerRecord]) -> list[tuple[Outgoing, FutureRecordMetadata]]:
        """Process the batch, sending each record's outputs as soon as they exist."""
        parsed: list[CloudEvent[DataT] | PoisonError] = []
        for record in records:
            try:
                parsed.append(parse_event(record.value, self._processor.model))
            except PoisonError as error:
                parsed.append(error)
        valid = [event for event in parsed if not isinstance(event, PoisonError)]
        results = iter(self._processor.process(valid))
        sent: list[tuple[Outgoing, FutureRecordMetadata]] = []
        for record, item in zip(records, parsed, strict=True):
            result = item if isinstance(item, PoisonError) else next(results)
            produced = self._reject(record, result) if isinstance(result, PoisonError) else result
            sent.extend((out, self._send(out)) for out in produced)
            self._log_record(record, item, result, produced)
        return sent

    def _log_record(
        self,
        record: ConsumerRecord,
        item: CloudEvent[DataT] | PoisonError,
        result: Result,
        produced: list[Outgoing],
    ) -> None:
        """One log line per record: where it was, its event id, what became of it. No payload."""
        poisoned = isinstance(result, PoisonError)
        fields: dict[str, object] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "event_id": None if isinstance(item, PoisonError) else item.id,
            "outcome": "dead_lettered" if poisoned else "ok",
            "produced": [out.kind for out in produced],
        }
        if isinstance(result, PoisonError):
            fields |= {"error_class": result.kind, "reason": result.reason}
        log.log(
            logging.WARNING if poisoned else logging.INFO,
            "processed a record",
            extra={"fields": fields},
        )
        self._metrics.consumed.labels(fields["outcome"]).inc()

    def _reject(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        self._metrics.dead_letters.labels(error.kind).inc()
        return [
            dead_letter(record, error, self._dlq_topic, self._service),
            *self._processor.on_poison(record, error),
        ]

    def _send(self, out: Outgoing) -> FutureRecordMetadata:
        return self._producer.send(
            out.topic, key=out.key, value=out.value, headers=list(out.headers)
        )

    def _flush(self, sent: list[tuple[Outgoing, FutureRecordMetadata]]) -> None:
        # Raises KafkaTimeoutError when the brokers do not acknowledge in time: the loop stops
        # without committing (the batch is read again after a restart) instead of hanging.
        self._producer.flush(timeout=self._flush_timeout_s)
        for _, future in sent:
            if future.failed():
                raise future.exception
        for out, _ in sent:
            self._metrics.produced.labels(out.kind).inc()

    def _commit(self) -> None:
        # After a batch, at most every ``commit_interval_s``: whatever was processed and not yet
        # confirmed. Asynchronous: the outputs are already acknowledged, so waiting for the
        # commit's own round trip would only slow the next batch. If the process dies before it
        # lands, those batches are read again (at-least-once); a clean stop commits
        # synchronously at the end.
        now = self._clock()
        if not self._processed_since_commit or now - self._committed_at < self._commit_interval_s:
            return
        offsets = self._pending.pending()
        self._committed_at, self._processed_since_commit = now, False
        if offsets:
            self._consumer.commit_async(offsets, callback=self._pending.on_commit)

    def _close(self) -> None:
        try:
            self._producer.flush(timeout=10)
            if offsets := self._pending.take():
                self._consumer.commit(offsets)
        except CommitFailedError:
            log.warning("final commit failed after a rebalance; the records will be redelivered")
        finally:
            self._producer.close(timeout=5)
            self._consumer.close(autocommit=False)

"""The consume → process → produce → commit loop, written once for all three services.

Offsets are committed by hand, only after every record a batch produced has been acknowledged by
the broker, so a crash at any point means the batch is read again (at-least-once; repeated outputs
carry the same CloudEvent id). A record that can never be processed goes to the service's
dead-letter topic with the reason in its headers; anything unexpected stops the loop without a
commit. SIGTERM lets the current batch finish, flush and commit before the clients close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from services.shared.config import KafkaSettings
from services.shared.errors import PoisonError
from services.shared.metrics import Health, ServiceMetrics
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

    def process(self, events: Sequence[CloudEvent[DataT]]) -> list[Result]:
        """Process valid events; one result per event, in order."""

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
    kafka: KafkaSettings, group_id: str, topics: Sequence[str], batch_size: int
) -> KafkaConsumer:
    """A group consumer with manual commits, reading from the start when the group is new."""
    return KafkaConsumer(
        *topics,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        **kafka.client_options(),
    )


def make_producer(kafka: KafkaSettings) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas."""
    return KafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
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
        dlq_topic: str,
        metrics: ServiceMetrics,
        health: Health,
        stop: threading.Event,
    ) -> None:
        self._service = service
        self._consumer = consumer
        self._producer = producer
        self._processor = processor
        self._dlq_topic = dlq_topic
        self._metrics = metrics
        self._health = health
        self._stop = stop
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}

    def run(self) -> None:
        """Poll, process, produce, flush and commit until the stop event is set."""
        try:
            while not self._stop.is_set():
                records = self._poll()
                if records:
                    started = time.perf_counter()
                    self._produce(self._handle(records))
                    self._commit(records)
                    self._metrics.batch_seconds.observe(time.perf_counter() - started)
        finally:
            self._health.set_ready(False, "stopping")
            self._close()

    def _poll(self) -> list[ConsumerRecord]:
        batches = self._consumer.poll(timeout_ms=100)
        assigned = self._consumer.assignment()
        self._health.set_ready(bool(assigned), "" if assigned else "no partitions assigned")
        self._report_lag(assigned)
        return [record for tp in sorted(batches) for record in batches[tp]]

    def _handle(self, records: list[ConsumerRecord]) -> list[Outgoing]:
        parsed: list[CloudEvent[DataT] | PoisonError] = []
        for record in records:
            try:
                parsed.append(parse_event(record.value, self._processor.model))
            except PoisonError as error:
                parsed.append(error)
        valid = [event for event in parsed if not isinstance(event, PoisonError)]
        results = iter(self._processor.process(valid))
        outgoing: list[Outgoing] = []
        for record, item in zip(records, parsed, strict=True):
            result = item if isinstance(item, PoisonError) else next(results)
            produced = self._reject(record, result) if isinstance(result, PoisonError) else result
            outgoing.extend(produced)
            self._log_record(record, item, result, produced)
        return outgoing

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

    def _produce(self, outgoing: list[Outgoing]) -> None:
        futures = [
            self._producer.send(out.topic, key=out.key, value=out.value, headers=list(out.headers))
            for out in outgoing
        ]
        self._producer.flush()
        for future in futures:
            if future.failed():
                raise future.exception
        for out in outgoing:
            self._metrics.produced.labels(out.kind).inc()

    def _commit(self, records: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(
                record.offset + 1, "", -1
            )
        # Asynchronous: the outputs are already acknowledged, so waiting for the commit's own
        # round trip would only slow the next batch. If the process dies before it lands, the
        # batch is read again (at-least-once); a clean stop commits synchronously at the end.
        self._uncommitted.update(offsets)
        self._consumer.commit_async(dict(self._uncommitted), callback=self._committed)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata], result: Any) -> None:
        if isinstance(result, Exception):
            # A rebalance, say: the new owner reads these records again, and the outputs already
            # produced repeat with the same ids. At-least-once, by design.
            log.warning(
                "commit failed; the records will be redelivered",
                extra={"fields": {"error": type(result).__name__}},
            )
            return
        for tp, committed in offsets.items():
            if self._uncommitted.get(tp) == committed:
                del self._uncommitted[tp]

    def _report_lag(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                position = self._consumer.position(tp)
                self._metrics.consumer_lag.labels(str(tp.partition)).set(
                    max(0, highwater - position)
                )

    def _close(self) -> None:
        try:
            self._producer.flush(timeout=10)
            if self._uncommitted:
                self._consumer.commit(dict(self._uncommitted))
        except CommitFailedError:
            log.warning("final commit failed after a rebalance; the records will be redelivered")
        finally:
            self._producer.close(timeout=5)
            self._consumer.close(autocommit=False)

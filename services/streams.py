"""Client-side helpers for the public topics: publish uploads, read verdicts and actions.

What a platform's own code does, in a few lines; the demo, the tests and the benchmarks use it.
Reading uses no consumer group: it assigns every partition and starts from the beginning.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition

from services.shared.config import KafkaSettings
from services.shared.errors import PoisonError
from services.shared.kafka import make_producer
from services.shared.schemas import (
    INTERNAL_EVENTS,
    PUBLIC_EVENTS,
    CloudEvent,
    UploadReceived,
    encode,
    new_event,
    parse_event,
)

_MODELS = {model.TYPE: model for model in (*PUBLIC_EVENTS, *INTERNAL_EVENTS)}


class UploadPublisher:
    """Publishes ``eraser.upload.v1`` events keyed by content id."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._topic = topic
        self._producer = make_producer(kafka)

    def publish(self, upload: UploadReceived, id: str | None = None) -> str:
        """Send one upload event (not waiting for the broker); its event id."""
        event = new_event(upload, id=id or str(uuid.uuid4()), source="urn:eraser:client")
        self._producer.send(self._topic, key=upload.content_id.encode(), value=encode(event))
        return event.id

    def send_raw(self, value: bytes | None, key: bytes | None = None) -> None:
        """Send arbitrary bytes to the uploads topic (for tests of hostile input)."""
        self._producer.send(self._topic, key=key, value=value)

    def flush(self) -> None:
        """Wait until the broker has every event sent so far."""
        self._producer.flush()

    def close(self) -> None:
        """Flush and close."""
        self._producer.close(timeout=10)


class Received(NamedTuple):
    """An event read from a topic, with the bytes it arrived as."""

    topic: str
    event: CloudEvent[Any]
    raw: bytes


class EventReader:
    """Reads and parses every event on some topics, from the beginning (or from now on)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        fetch_max_wait_ms: int = 50,
        from_end: bool = False,
    ) -> None:
        self._consumer = KafkaConsumer(
            enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms, **kafka.client_options()
        )
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(partitions)
        if from_end:
            self._consumer.seek_to_end(*partitions)
            for partition in partitions:  # fix the end now: events sent after this are read
                self._consumer.position(partition)
        else:
            self._consumer.seek_to_beginning(*partitions)

    def read(self, timeout_ms: int = 200) -> list[Received]:
        """The events that arrived since the last read."""
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        return [
            Received(record.topic, parse_any(record.value), record.value)
            for tp in sorted(batches)
            for record in batches[tp]
            if record.value is not None
        ]

    def read_raw(self, timeout_ms: int = 200) -> list[tuple[str, bytes]]:
        """The records that arrived since the last read, unparsed, as (topic, value)."""
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        return [
            (record.topic, record.value)
            for tp in sorted(batches)
            for record in batches[tp]
            if record.value is not None
        ]

    def end_offsets(self) -> dict[TopicPartition, int]:
        """Where each partition read ends now."""
        assigned = list(self._consumer.assignment())
        ends: dict[TopicPartition, int] = self._consumer.end_offsets(assigned)
        return ends

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close(autocommit=False)


def parse_any(raw: bytes) -> CloudEvent[Any]:
    """Parse an event of any eraser type.

    Raises:
        PoisonError: not an eraser event.
    """
    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError):
        raise PoisonError("not a JSON object") from None
    model = _MODELS.get(kind)
    if model is None:
        raise PoisonError(f"unknown event type {str(kind)[:64]!r}")
    return parse_event(raw, model)

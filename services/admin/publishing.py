"""Publishes changes to what eraser protects: registrations, tombstones, bank policies, audit.

Every write waits until the broker has acknowledged it, so a command that returns has taken
effect (the matchers apply it within a poll).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer

from services.shared.config import KafkaSettings, TopicSettings
from services.shared.kafka import make_producer
from services.shared.schemas import (
    AuditRecorded,
    BankConfigured,
    EntryRegistered,
    Schema,
    encode,
    new_event,
)

SOURCE = "urn:eraser:admin"


class Publisher:
    """Writes to the registry, banks and audit topics."""

    def __init__(
        self, kafka: KafkaSettings, topics: TopicSettings, producer: KafkaProducer | None = None
    ) -> None:
        self._topics = topics
        self._producer = producer or make_producer(kafka)

    def register(self, registrations: Iterable[EntryRegistered]) -> int:
        """Publish registrations; how many."""
        return self._send(self._topics.registry, ((r.entry_id, r) for r in registrations))

    def withdraw(self, entry_ids: Iterable[str]) -> int:
        """Publish tombstones for entries; how many."""
        return self._send(self._topics.registry, ((entry_id, None) for entry_id in entry_ids))

    def set_bank(self, configured: BankConfigured) -> None:
        """Publish a bank's policy."""
        self._send(self._topics.banks, [(configured.bank, configured)])

    def reset_bank(self, bank: str) -> None:
        """Publish a tombstone for a bank's policy (it falls back to the configured default)."""
        self._send(self._topics.banks, [(bank, None)])

    def audit(self, records: Iterable[AuditRecorded]) -> None:
        """Append to the audit log (one change may take several records)."""
        self._send(self._topics.audit, ((record.actor, record) for record in records))

    def case(self, case_id: str, record: Schema) -> None:
        """Publish a case record (``services/cases``) under its key."""
        self._send(self._topics.cases, [(case_id, record)])

    def close(self) -> None:
        """Flush and close."""
        self._producer.close(timeout=10)

    def _send(self, topic: str, items: Iterable[tuple[str, Schema | None]]) -> int:
        futures: list[Any] = []
        for key, data in items:
            value = (
                None
                if data is None
                else encode(new_event(data, id=str(uuid.uuid4()), source=SOURCE))
            )
            futures.append(self._producer.send(topic, key=key.encode(), value=value))
        self._producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises what the broker said, if it refused
        return len(futures)

"""The admin API's window on the audit log: the latest records, and a count of unreadable ones.

Fed by following the audit topic (``shared/follower.py``); ``GET /audit`` reads it. A record that
is not a valid ``eraser.audit.v1`` is never silently dropped: it is logged (by partition and
offset only; it may hold anything) and counted, and ``eraser audit`` shows it too.
"""

from __future__ import annotations

import collections
import logging
import threading

from kafka.consumer.fetcher import ConsumerRecord

from services.shared.errors import PoisonError
from services.shared.schemas import AuditRecorded, parse_event

log = logging.getLogger(__name__)
AUDIT_KEPT = 10_000


class AuditTail:
    """The last ``kept`` audit records with their times, oldest first."""

    def __init__(self, kept: int = AUDIT_KEPT) -> None:
        self._records: collections.deque[tuple[str, AuditRecorded]] = collections.deque(maxlen=kept)
        self._unreadable = 0
        self._lock = threading.Lock()

    def apply(self, record: ConsumerRecord) -> None:
        """Keep one audit-topic record, or count and log it if unreadable."""
        try:
            event = parse_event(record.value, AuditRecorded)
        except PoisonError as error:
            with self._lock:
                self._unreadable += 1
            log.error(
                "unreadable audit record",
                extra={
                    "fields": {
                        "partition": record.partition,
                        "offset": record.offset,
                        "error": type(error).__name__,
                    }
                },
            )
            return
        with self._lock:
            self._records.append((event.time.isoformat(), event.data))

    def records(self) -> list[tuple[str, AuditRecorded]]:
        """The records kept, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def unreadable(self) -> int:
        """How many records could not be read since the start."""
        with self._lock:
            return self._unreadable

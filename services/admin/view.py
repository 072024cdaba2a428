"""The admin side's view of the registry: every entry, by id.

Used to find a bank's or a batch's entries and to export them; fed by following the registry
topic (``shared/follower.py``).
"""

from __future__ import annotations

import logging
import threading

from kafka.consumer.fetcher import ConsumerRecord

from services.shared.errors import PoisonError
from services.shared.schemas import EntryRegistered, parse_event

log = logging.getLogger(__name__)
BATCH_LABEL = "batch"


class RegistryView:
    """Entries by id, as the registry topic says now."""

    def __init__(self) -> None:
        self._entries: dict[str, EntryRegistered] = {}
        self._lock = threading.Lock()

    def apply(self, record: ConsumerRecord) -> None:
        """Apply a registry record (a registration, or a tombstone)."""
        entry_id = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            with self._lock:
                self._entries.pop(entry_id, None)
            return
        try:
            registration = parse_event(record.value, EntryRegistered).data
        except PoisonError as error:
            log.error(
                "skipped a registry record",
                extra={"fields": {"reason": error.reason, "offset": record.offset}},
            )
            return
        with self._lock:
            self._entries[registration.entry_id] = registration

    def in_bank(self, bank: str) -> list[EntryRegistered]:
        """The entries of a bank."""
        with self._lock:
            return [e for e in self._entries.values() if e.bank == bank]

    def in_batch(self, batch: str) -> list[EntryRegistered]:
        """The entries imported in a batch."""
        with self._lock:
            return [e for e in self._entries.values() if e.labels.get(BATCH_LABEL) == batch]

    def get(self, entry_id: str) -> EntryRegistered | None:
        """One entry, if registered."""
        return self._entries.get(entry_id)

    def banks(self) -> dict[str, int]:
        """Entry counts per bank."""
        with self._lock:
            counts: dict[str, int] = {}
            for entry in self._entries.values():
                counts[entry.bank] = counts.get(entry.bank, 0) + 1
            return counts

"""The admin side's index of the registry: for each entry id, its bank, batch and record.

Used to find a bank's or a batch's entries, to refuse an entry id that belongs to another bank,
and to know which records an export must read back (``admin/export.py``); fed by following the
registry topic (``shared/follower.py``). It holds no hashes: a registration takes 1.5 KB to
30 KB in memory (embeddings), an index slot about 220 bytes, so 10M entries take about 2 GB.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import NamedTuple

from kafka.consumer.fetcher import ConsumerRecord

from services.shared.errors import PoisonError
from services.shared.schemas import EntryRegistered, parse_event

log = logging.getLogger(__name__)
BATCH_LABEL = "batch"


class Slot(NamedTuple):
    """Where an entry is: its bank, import batch, and the record that registered it."""

    bank: str
    batch: str | None
    embeddings: bool
    partition: int
    offset: int
    subject: str | None = None
    face: bool = False


class RegistryView:
    """Entries by id, as the registry topic says now; safe to read while a follower applies."""

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._counts: dict[str, int] = {}
        self._embedded: dict[str, int] = {}
        self._lock = threading.Lock()

    def apply(self, record: ConsumerRecord) -> None:
        """Apply a registry record (a registration, or a tombstone)."""
        entry_id = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            with self._lock:
                self._drop(entry_id)
            return
        try:
            registration = parse_event(record.value, EntryRegistered).data
        except PoisonError as error:
            log.error(
                "skipped a registry record",
                extra={"fields": {"reason": error.reason, "offset": record.offset}},
            )
            return
        slot = _slot(registration, record)
        with self._lock:
            self._drop(registration.entry_id)
            self._slots[registration.entry_id] = slot
            self._counts[slot.bank] = self._counts.get(slot.bank, 0) + 1
            if slot.embeddings:
                self._embedded[slot.bank] = self._embedded.get(slot.bank, 0) + 1

    def get(self, entry_id: str) -> Slot | None:
        """Where one entry is, if registered."""
        with self._lock:
            return self._slots.get(entry_id)

    def in_bank(self, bank: str) -> dict[str, Slot]:
        """The entries of a bank, by id."""
        with self._lock:
            return {entry_id: s for entry_id, s in self._slots.items() if s.bank == bank}

    def of_subject(self, subject: str) -> list[str]:
        """The ids of the entries (photographs and faces) of a subject."""
        with self._lock:
            return [entry_id for entry_id, s in self._slots.items() if s.subject == subject]

    def in_batch(self, batch: str) -> list[str]:
        """The ids of the entries imported in a batch."""
        with self._lock:
            return [entry_id for entry_id, s in self._slots.items() if s.batch == batch]

    def banks(self) -> dict[str, int]:
        """Entry counts per bank."""
        with self._lock:
            return dict(self._counts)

    def with_embeddings(self, bank: str) -> int:
        """How many of a bank's entries have image embeddings."""
        with self._lock:
            return self._embedded.get(bank, 0)

    def _drop(self, entry_id: str) -> None:
        old = self._slots.pop(entry_id, None)
        if old is None:
            return
        _decrement(self._counts, old.bank)
        if old.embeddings:
            _decrement(self._embedded, old.bank)


def _slot(registration: EntryRegistered, record: ConsumerRecord) -> Slot:
    batch = registration.labels.get(BATCH_LABEL)
    # Interned: thousands of entries share a bank and a batch name, so they share one string.
    return Slot(
        bank=sys.intern(registration.bank),
        batch=sys.intern(batch) if batch is not None else None,
        embeddings=bool(registration.signals.embedding),
        partition=record.partition,
        offset=record.offset,
        subject=registration.subject,
        face=registration.signals.face is not None,
    )


def _decrement(counts: dict[str, int], key: str) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]

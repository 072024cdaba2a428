"""The matcher's copy of the registry, kept current by following the ``eraser.registry`` topic.

Every matcher replica replays the whole (compacted) registry topic on start, then keeps reading it
(``shared/follower.py``), so a registration or withdrawal published anywhere reaches every replica
within a poll. The topic is keyed by entry id: a record replaces the entry, a tombstone (null
value) withdraws it. Only hashes are held; no image ever reaches the matcher.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.index import PdqIndex, codes_from_hex
from services.shared.errors import PoisonError
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import EntryRegistered, Signal, parse_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """What the matcher keeps of a registered entry."""

    entry_id: str
    bank: str
    sha256: str | None
    md5: str | None


class Registry:
    """Registered entries: a PDQ index and exact SHA-256 / MD5 maps, safe to read while updated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pdq = PdqIndex()
        self._key_of: dict[str, int] = {}
        self._entries: dict[int, Entry] = {}
        self._exact: dict[Signal, defaultdict[str, set[int]]] = {
            "sha256": defaultdict(set),
            "md5": defaultdict(set),
        }
        self._exact_count: dict[Signal, int] = {"sha256": 0, "md5": 0}
        self._next_key = 0

    def counts(self) -> dict[Signal, int]:
        """How many hashes of each signal are held."""
        return {"pdq": len(self._pdq), **self._exact_count}

    def register(self, registration: EntryRegistered) -> None:
        """Add an entry, replacing any earlier registration with the same id."""
        signals = registration.signals
        with self._lock:
            self._withdraw_locked(registration.entry_id)
            key, self._next_key = self._next_key, self._next_key + 1
            entry = Entry(registration.entry_id, registration.bank, signals.sha256, signals.md5)
            self._key_of[entry.entry_id] = key
            self._entries[key] = entry
            for signal, digest in _digests(signals.sha256, signals.md5):
                if digest is not None:
                    self._exact[signal][digest].add(key)
                    self._exact_count[signal] += 1
            self._pdq.add(key, codes_from_hex(signals.pdq))

    def withdraw(self, entry_id: str) -> bool:
        """Remove an entry; False if it was not registered."""
        with self._lock:
            return self._withdraw_locked(entry_id)

    def exact(self, signal: Signal, digest: str) -> list[Entry]:
        """Entries registered with this exact SHA-256 or MD5."""
        with self._lock:
            return [self._entries[key] for key in self._exact[signal].get(digest, ())]

    def near(self, hashes: list[list[str]], max_distance: int) -> list[dict[Entry, int]]:
        """For each upload's PDQ hashes (its rotations/flips), entries within ``max_distance``.

        Searched as one batch; each entry is reported once per upload with its smallest distance.
        """
        queries = codes_from_hex([code for codes in hashes for code in codes])
        owner = [upload for upload, codes in enumerate(hashes) for _ in codes]
        found: list[dict[Entry, int]] = [{} for _ in hashes]
        for hit in self._pdq.search(queries, max_distance):
            entry = self._entries.get(hit.key)
            if entry is None:
                continue  # withdrawn between the search and this lookup
            best = found[owner[hit.query]]
            best[entry] = min(hit.distance, best.get(entry, hit.distance))
        return found

    def _withdraw_locked(self, entry_id: str) -> bool:
        key = self._key_of.pop(entry_id, None)
        if key is None:
            return False
        entry = self._entries.pop(key)
        for signal, digest in _digests(entry.sha256, entry.md5):
            if digest is not None:
                keys = self._exact[signal][digest]
                keys.discard(key)
                self._exact_count[signal] -= 1
                if not keys:
                    del self._exact[signal][digest]
        self._pdq.remove(key)
        return True


def _digests(sha256: str | None, md5: str | None) -> list[tuple[Signal, str | None]]:
    return [("sha256", sha256), ("md5", md5)]


class RegistryApplier:
    """Applies registry-topic records to a :class:`Registry`: registrations and tombstones."""

    def __init__(self, registry: Registry, metrics: MatcherMetrics) -> None:
        self._registry = registry
        self._metrics = metrics

    def __call__(self, record: ConsumerRecord) -> None:
        """Apply one record; a malformed one is counted, logged and skipped."""
        entry_id = record.key.decode(errors="replace") if record.key else ""
        try:
            if record.value is None:
                self._registry.withdraw(entry_id)
                self._metrics.registry_records.labels("withdrawn").inc()
                return
            registration = parse_event(record.value, EntryRegistered).data
            if registration.entry_id != entry_id:
                raise PoisonError("record key is not the entry id")
        except PoisonError as error:
            # Every replica reads the same record and rejects it the same way; a dead letter per
            # replica per restart would only be noise, so it is counted and logged instead.
            self._metrics.registry_records.labels("rejected").inc()
            log.error(
                "rejected a registry record",
                extra={
                    "fields": {
                        "reason": error.reason,
                        "partition": record.partition,
                        "offset": record.offset,
                    }
                },
            )
            return
        self._registry.register(registration)
        self._metrics.registry_records.labels("registered").inc()

    def progress(self, behind: int, lag_seconds: float) -> None:
        """Report how far behind the topic the registry is, and its size."""
        self._metrics.registry_behind.set(behind)
        self._metrics.registry_lag_seconds.set(lag_seconds)
        for signal, count in self._registry.counts().items():
            self._metrics.index_entries.labels(signal).set(count)

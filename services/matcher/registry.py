"""The matcher's copy of the registry, kept current by following the ``eraser.registry`` topic.

Every matcher replica replays the whole (compacted) registry topic on start, then keeps reading it,
so a registration or withdrawal published anywhere reaches every replica within a poll. The topic
is keyed by entry id: a record replaces the entry, a tombstone (null value) withdraws it. Only
hashes are held; no image ever reaches the matcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.index import PdqIndex, codes_from_hex
from services.shared.config import KafkaSettings
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


class RegistryFollower:
    """Replays the registry topic into a :class:`Registry`, then keeps following it."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        registry: Registry,
        metrics: MatcherMetrics,
        stop: threading.Event,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._registry = registry
        self._metrics = metrics
        self._stop = stop
        self._on_failure = on_failure
        self._caught_up = threading.Event()
        self._last_applied_ms = 0
        self._thread = threading.Thread(target=self._run, name="registry", daemon=True)

    def start(self) -> RegistryFollower:
        """Start following in a background thread."""
        self._thread.start()
        return self

    def wait_until_caught_up(self) -> bool:
        """Block until the replay reached the end of the topic (False if stopped first)."""
        while not self._stop.is_set():
            if self._caught_up.wait(timeout=0.1):
                return True
        return False

    def _run(self) -> None:
        try:
            consumer = KafkaConsumer(
                enable_auto_commit=False,
                fetch_max_wait_ms=max(self._kafka.fetch_max_wait_ms, 100),
                **self._kafka.client_options(),
            )
            try:
                self._follow(consumer)
            finally:
                consumer.close(autocommit=False)
        except BaseException as error:
            log.exception("registry follower failed")
            self._on_failure(error)

    def _follow(self, consumer: KafkaConsumer) -> None:
        partitions = self._wait_for_partitions(consumer)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        replay_end = consumer.end_offsets(partitions)
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=200)
            for tp in sorted(batches):
                for record in batches[tp]:
                    self._apply(record)
                    self._last_applied_ms = max(self._last_applied_ms, record.timestamp)
            self._report(consumer, partitions)
            if not batches and all(consumer.position(tp) >= replay_end[tp] for tp in partitions):
                if not self._caught_up.is_set():
                    log.info("registry replayed", extra={"fields": self._registry.counts()})
                self._caught_up.set()

    def _wait_for_partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        while not self._stop.is_set():
            partitions = consumer.partitions_for_topic(self._topic)
            if partitions:
                return [TopicPartition(self._topic, p) for p in sorted(partitions)]
            self._stop.wait(1.0)
        return []

    def _apply(self, record: ConsumerRecord) -> None:
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

    def _report(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        behind = 0
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                behind += max(0, highwater - consumer.position(tp))
        self._metrics.registry_behind.set(behind)
        # Like a replica's "seconds behind": the age of the newest record applied, while behind.
        age = time.time() - self._last_applied_ms / 1000 if self._last_applied_ms else 0.0
        self._metrics.registry_lag_seconds.set(max(0.0, age) if behind else 0.0)
        for signal, count in self._registry.counts().items():
            self._metrics.index_entries.labels(signal).set(count)

"""Applies the registry topic to the matcher's registry: registrations and tombstones.

Called by the registry follower (``shared/follower.py``) for every record, and between polls,
when the state matches the follower's positions: the moment to compact or to mark the snapshot
current.
"""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.registry import Registry
from services.shared.errors import PoisonError
from services.shared.follower import log_rejected
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import EntryRegistered, parse_event


class RegistryApplier:
    """Applies registry-topic records to a :class:`Registry`: registrations and tombstones."""

    def __init__(self, registry: Registry, metrics: MatcherMetrics) -> None:
        self._registry = registry
        self._metrics = metrics
        self._behind = -1  # unknown until the first poll

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
            log_rejected("registry", record, error.reason)
            return
        self._registry.register(registration)
        self._metrics.registry_records.labels("registered").inc()

    def after_poll(self, positions: dict[int, int]) -> None:
        """Between polls the state matches ``positions``: the moment to start a compaction."""
        if self._registry.needs_compaction():
            self._registry.compact(positions)
        elif self._behind == 0:
            self._registry.mark_current()

    def progress(self, behind: int | None, seconds_behind: float) -> None:
        """Report how far behind the topic the registry is (None: not known yet), and its size.

        (Seconds behind are computed by the metric itself at each scrape.) Only a known 0 lets
        :meth:`after_poll` mark the snapshot current.
        """
        self._behind = -1 if behind is None else behind
        if behind is not None:
            self._metrics.registry_behind.set(behind)
        for signal, count in self._registry.counts().items():
            self._metrics.index_entries.labels(signal).set(count)

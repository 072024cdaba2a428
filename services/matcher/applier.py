"""Applies the registry topic to the matcher's registry: registrations and tombstones.

Called by the registry follower (``shared/follower.py``) for every record, and between polls,
when the state matches the follower's positions: the moment to compact or to mark the snapshot
current. Registered videos go to a registry of their own (``video.py``); each registry applies
only the records after those its snapshot already reflects.
"""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.registry import Registry
from services.matcher.video import is_video, video_member
from services.shared.errors import PoisonError
from services.shared.follower import log_rejected
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import EntryRegistered, parse_event


class RegistryApplier:
    """Applies registry-topic records to a :class:`Registry`: registrations and tombstones."""

    def __init__(
        self, registry: Registry, metrics: MatcherMetrics, videos: Registry | None = None
    ) -> None:
        self._registry = registry
        self._videos = videos
        self._metrics = metrics
        self._behind = -1  # unknown until the first poll
        self._starts = [(r, dict(r.offsets)) for r in (registry, videos) if r is not None]

    def __call__(self, record: ConsumerRecord) -> None:
        """Apply one record; a malformed one is counted, logged and skipped."""
        entry_id = record.key.decode(errors="replace") if record.key else ""
        try:
            if record.value is None:
                for registry in self._applying(record):
                    registry.withdraw(entry_id)
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
        video = self._videos is not None and is_video(registration)
        for registry in self._applying(record):
            if registry is self._videos:
                if video:
                    registry.add(video_member(registration))
                else:
                    registry.withdraw(entry_id)  # re-registered as a photo
            elif video:
                registry.withdraw(entry_id)  # re-registered as a video
            else:
                registry.register(registration)
        self._metrics.registry_records.labels("registered").inc()

    def _applying(self, record: ConsumerRecord) -> list[Registry]:
        """The registries this record is news to: those whose snapshot was taken before it."""
        return [
            registry
            for registry, start in self._starts
            if record.offset >= start.get(record.partition, 0)
        ]

    def after_poll(self, positions: dict[int, int]) -> None:
        """Between polls the state matches ``positions``: the moment to start a compaction."""
        for registry, _ in self._starts:
            if registry.needs_compaction():
                registry.compact(positions)
            elif self._behind == 0:
                registry.mark_current()

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
        if self._videos is not None:
            self._metrics.index_entries.labels("vpdq").set(self._videos.counts()["pdq"])

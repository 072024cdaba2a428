"""The consume loop's partitions: offsets done but not yet committed, lag, and rebalances.

A rebalance takes partitions away while the loop waits in ``poll``; by then every record the loop
was handed has been processed and its output flushed, so the offsets it holds for those partitions
are exactly the work it has done. :class:`Rebalance` commits them before the partitions go, so the
new owner starts where this process stopped, and forgets them, so a later commit from here cannot
move the group's offset back under the new owner. Their lag series go too: summed over replicas,
each partition then counts once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from services.shared.health import Health
from services.shared.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, OffsetAndMetadata]
PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_MS = 5_000


class PendingOffsets:
    """Per partition, the offset after the last record processed, until a commit confirms it."""

    def __init__(self) -> None:
        self._offsets: Offsets = {}

    def advance(self, records: Iterable[ConsumerRecord]) -> None:
        """Note a processed batch."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)

    def pending(self) -> Offsets:
        """Everything still to commit."""
        return dict(self._offsets)

    def take(self, partitions: Iterable[TopicPartition] | None = None) -> Offsets:
        """Remove and return the offsets of ``partitions`` (of all, if None)."""
        chosen = list(self._offsets) if partitions is None else partitions
        return {tp: self._offsets.pop(tp) for tp in chosen if tp in self._offsets}

    def on_commit(self, offsets: Offsets, result: Any) -> None:
        """The callback of an asynchronous commit: forget what it confirmed."""
        if isinstance(result, Exception):
            # A rebalance, say: the new owner reads these records again, and the outputs already
            # produced repeat with the same ids. At-least-once, by design.
            log.warning(
                "commit failed; the records will be redelivered",
                extra={"fields": {"error": type(result).__name__}},
            )
            return
        for tp, committed in offsets.items():
            if self._offsets.get(tp) == committed:
                del self._offsets[tp]


class Probe:
    """Every few seconds: whether the brokers answer, what this process holds, how far behind.

    ``poll`` returns nothing both when the topics are quiet and when the brokers are gone, so
    readiness needs a request that must be answered: the end offsets of the input partitions.
    What this process holds is what the group last gave it, as the listener reports it: while a
    rebalance is under way ``consumer.assignment()`` still lists the partitions being revoked.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        topics: Sequence[str],
        metrics: ServiceMetrics,
        health: Health,
    ) -> None:
        self._consumer = consumer
        self._topics = topics
        self._metrics = metrics
        self._health = health
        self._held: set[TopicPartition] = set()
        self._due = 0.0

    def gained(self, partitions: Iterable[TopicPartition]) -> None:
        """The group gave this process ``partitions``; show them at the next probe."""
        self._held |= set(partitions)
        self._due = 0.0

    def maybe(self) -> None:
        """Probe if the last probe is older than the interval."""
        now = time.monotonic()
        if now >= self._due:
            self._due = now + PROBE_INTERVAL_S
            self._probe()

    def gone(self, partitions: Iterable[TopicPartition]) -> None:
        """The group took ``partitions`` away: drop their lag series."""
        for tp in partitions:
            self._held.discard(tp)
            self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self._due = 0.0

    def _probe(self) -> None:
        held = sorted(self._held)
        self._health.assigned(held)
        # Holding nothing (more replicas than partitions), partition 0 of each input still tells
        # whether the brokers answer.
        asked = held or [TopicPartition(topic, 0) for topic in self._topics]
        try:
            self._consumer.end_offsets(asked, timeout_ms=PROBE_TIMEOUT_MS)
            lags = {tp: self._lag(tp) for tp in held}
        except KafkaError as error:
            log.warning(
                "the brokers did not answer", extra={"fields": {"error": type(error).__name__}}
            )
            return
        self._health.broker_answered()
        for tp, lag in lags.items():
            if lag is not None:
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _lag(self, tp: TopicPartition) -> int | None:
        # The high watermark comes with every fetch response: fresh while the loop polls.
        highwater = self._consumer.highwater(tp)
        position = self._consumer.position(tp, timeout_ms=PROBE_TIMEOUT_MS)
        if highwater is None or position is None:
            return None
        return max(0, int(highwater) - int(position))


class Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Commits and forgets what the loop holds for partitions the group takes away.

    Asynchronous because kafka-python 3 calls listeners on its network thread, where the blocking
    ``commit`` cannot run; awaiting ``commit_async`` still completes the commit before the
    rebalance goes on.
    """

    def __init__(self, consumer: KafkaConsumer, pending: PendingOffsets, probe: Probe) -> None:
        self._consumer = consumer
        self._pending = pending
        self._probe = probe

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what was done on ``revoked`` and forget them."""
        offsets = self._release(revoked)
        if not offsets:
            return
        try:
            await self._consumer.commit_async(offsets)
        except KafkaError as error:
            log.warning(
                "commit before a rebalance failed; the new owner will read those records again",
                extra={"fields": {"error": type(error).__name__}},
            )

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Forget ``lost`` without a commit: another member may already own them."""
        self._release(lost)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Note ``assigned`` (all of them, or under cooperative rebalancing those added)."""
        self._probe.gained(assigned)

    def _release(self, partitions: set[TopicPartition]) -> Offsets:
        self._probe.gone(partitions)
        return self._pending.take(partitions)

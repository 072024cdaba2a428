"""Following a compacted topic: replay it from the beginning, then keep reading it.

The matcher follows the registry and the banks topics, the actions service the banks topic: each
replica holds the whole state, so every replica agrees and a change published anywhere reaches
all of them within a poll. No consumer group: every partition is assigned, nothing is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.shared.config import KafkaSettings

log = logging.getLogger(__name__)

Progress = Callable[[int | None, float], None]  # records behind (None: not known yet)
"""Called after every poll with (records behind the end, :meth:`TopicFollower.seconds_behind`)."""


def log_rejected(what: str, record: ConsumerRecord, reason: str) -> None:
    """Log a followed record that cannot be applied: where it is and why, never its content."""
    log.error(
        f"rejected a {what} record",
        extra={
            "fields": {"reason": reason, "partition": record.partition, "offset": record.offset}
        },
    )


class TopicFollower:
    """Applies every record of a topic, in order per partition, in a background thread."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        apply: Callable[[ConsumerRecord], None],
        stop: threading.Event,
        on_failure: Callable[[BaseException], None],
        on_progress: Progress | None = None,
        start_offsets: dict[int, int] | None = None,
        after_poll: Callable[[dict[int, int]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._apply = apply
        self._stop = stop
        self._on_failure = on_failure
        self._on_progress = on_progress
        self._after_poll = after_poll
        self._start_offsets = start_offsets or {}
        self._caught_up = threading.Event()
        self._positions: dict[int, int] = {}
        self._clock = clock
        self._in_step_at: float | None = None
        self._started_at = clock()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self) -> TopicFollower:
        """Start following."""
        self._thread.start()
        return self

    @property
    def caught_up(self) -> bool:
        """Whether the replay has reached the end of the topic once."""
        return self._caught_up.is_set()

    def seconds_behind(self) -> float:
        """Seconds since the applied state last held everything on the topic.

        Computed when asked, from the last poll that ended level with the end of every
        partition: a follower that stops polling, or never catches up, falls further behind
        while nobody is looking. Before the first such poll, it counts from the start.
        """
        since = self._started_at if self._in_step_at is None else self._in_step_at
        return max(0.0, self._clock() - since)

    def positions(self) -> dict[int, int]:
        """The next offset to apply, per partition."""
        return dict(self._positions)

    def join(self) -> None:
        """Wait for the thread to end (after the stop event is set)."""
        self._thread.join()

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
            log.exception("following %s failed", self._topic)
            self._on_failure(error)

    def _follow(self, consumer: KafkaConsumer) -> None:
        partitions = self._wait_for_partitions(consumer)
        consumer.assign(partitions)
        for tp in partitions:
            if tp.partition in self._start_offsets:
                consumer.seek(tp, self._start_offsets[tp.partition])
            else:
                consumer.seek_to_beginning(tp)
        replay_end = consumer.end_offsets(partitions)
        while not self._stop.is_set():
            # Taken before the poll: what it fetches is on the topic by then at the latest.
            polled_at = self._clock()
            batches = consumer.poll(timeout_ms=200)
            for tp in sorted(batches):
                for record in batches[tp]:
                    self._apply(record)
            self._positions = {tp.partition: consumer.position(tp) for tp in partitions}
            behind = self._behind(consumer, partitions)
            if behind == 0:
                self._in_step_at = polled_at
            if self._on_progress is not None:
                self._on_progress(behind, self.seconds_behind())
            if self._after_poll is not None:
                self._after_poll(dict(self._positions))
            # An empty poll at or past the end seen at start: the replay is complete. (Some
            # brokers under-report the end offset; an empty poll guards against stopping early.)
            if not batches and all(
                self._positions[tp.partition] >= replay_end[tp] for tp in partitions
            ):
                if not self._caught_up.is_set():
                    log.info("replayed %s", self._topic)
                self._caught_up.set()

    def _wait_for_partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        while not self._stop.is_set():
            partitions = consumer.partitions_for_topic(self._topic)
            if partitions:
                return [TopicPartition(self._topic, p) for p in sorted(partitions)]
            self._stop.wait(1.0)
        return []

    def _behind(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> int | None:
        """Records between the positions and the high watermarks; None until all are known."""
        behind = 0
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is None:
                return None
            behind += max(0, highwater - self._positions[tp.partition])
        return behind


def replay(kafka: KafkaSettings, topic: str, apply: Callable[[ConsumerRecord], None]) -> None:
    """Apply every record of ``topic`` up to its current end, then return."""
    stop = threading.Event()
    failures: list[BaseException] = []
    follower = TopicFollower(
        kafka=kafka, topic=topic, apply=apply, stop=stop, on_failure=failures.append
    ).start()
    while not follower.caught_up and not failures:
        time.sleep(0.05)
    stop.set()
    follower.join()
    if failures:
        raise failures[0]

import asyncio
import threading
from collections.abc import Sequence

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from services.shared.errors import MediaUndecodableError, PoisonError
from services.shared.health import Health
from services.shared.kafka import ConsumeLoop, Outgoing, Result
from services.shared.metrics import ServiceMetrics
from services.shared.schemas import UploadReceived, encode, new_event
from tests.records import record

P0, P1 = TopicPartition("uploads", 0), TopicPartition("uploads", 1)


class FakeConsumer:
    """Joins the group on the first poll, hands out its batches, then stops the loop.

    A batch may instead be a rebalance: ("revoke", partitions), ("lose", partitions) or
    ("assign", partitions), run through the loop's listener as kafka-python does inside poll().
    As in kafka-python, assignment() lists revoked partitions until the new assignment arrives.
    Records what was committed; asynchronous commits are confirmed only if ``confirm`` is set.
    """

    def __init__(self, batches, stop, assigned=(P0, P1), confirm=True):
        self.batches = list(batches)
        self.stop = stop
        self.joining = set(assigned)
        self.assigned = set()
        self.confirm = confirm
        self.committed = []
        self.closed = False
        self.listener = None
        self.topics = None
        self.on_poll = []
        self.highwaters = {}
        self.answers = True

    def subscribe(self, topics, listener):
        self.topics, self.listener = topics, listener

    def poll(self, timeout_ms):
        for hook in self.on_poll:
            hook()
        if self.joining is not None:
            self._rebalance("assign", self.joining)
            self.joining = None
            return {}
        if not self.batches:
            self.stop.set()
            return {}
        batch = self.batches.pop(0)
        if isinstance(batch, tuple):
            self._rebalance(*batch)
            return {}
        by_partition = {}
        for r in batch:
            by_partition.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return by_partition

    def _rebalance(self, change, partitions):
        if change == "assign":
            self.assigned = set(partitions)
            asyncio.run(self.listener.on_partitions_assigned(set(partitions)))
            return
        method = {"revoke": "on_partitions_revoked", "lose": "on_partitions_lost"}[change]
        asyncio.run(getattr(self.listener, method)(set(partitions)))

    def assignment(self):
        return set(self.assigned)

    def end_offsets(self, partitions, timeout_ms):
        assert timeout_ms is not None
        if not self.answers:
            raise KafkaTimeoutError("no answer")
        return {tp: self.highwaters.get(tp, 0) for tp in partitions}

    def highwater(self, tp):
        return self.highwaters.get(tp)

    def position(self, tp, timeout_ms):
        return 0

    def commit(self, offsets):
        self.committed.append({tp.partition: meta.offset for tp, meta in offsets.items()})

    def commit_async(self, offsets, callback=None):
        self.commit(offsets)
        future = Future()
        if self.confirm or callback is None:
            future.success(None)
            if callback is not None:
                callback(offsets, None)
        return future

    def close(self, autocommit):
        assert autocommit is False
        self.closed = True


class FakeFuture:
    def __init__(self, error=None):
        self.exception = error

    def failed(self):
        return self.exception is not None


class FakeProducer:
    def __init__(self, fail=False):
        self.sent = []
        self.fail = fail

    def send(self, topic, key, value, headers):
        self.sent.append((topic, key, value, dict(headers)))
        return FakeFuture(RuntimeError("broker said no") if self.fail else None)

    def flush(self, timeout=None):
        pass

    def close(self, timeout):
        pass


class SilentBrokerProducer(FakeProducer):
    """The brokers never acknowledge: a flush returns only by timing out."""

    def __init__(self):
        super().__init__()
        self.flush_timeouts = []

    def flush(self, timeout=None):
        self.flush_timeouts.append(timeout)
        if timeout is None:
            raise AssertionError("a flush without a timeout would wait forever")
        raise KafkaTimeoutError(f"not acknowledged within {timeout} s")


class EchoProcessor:
    """Echoes each upload's content id; content ids starting with 'bad' are poison."""

    model = UploadReceived

    def process(self, events: Sequence) -> list[Result]:
        return [
            MediaUndecodableError("not an image")
            if e.data.content_id.startswith("bad")
            else [Outgoing("out", e.data.content_id.encode(), b"ok", "echo")]
            for e in events
        ]

    def on_poison(self, rec, error: PoisonError) -> list[Outgoing]:
        return [Outgoing("verdicts", rec.key, b"error-verdict", "verdict")]


def upload(content_id):
    event = new_event(
        UploadReceived(content_id=content_id, media_b64="AA=="), id=content_id, source="t"
    )
    return encode(event)


class OneAtATimeProcessor(EchoProcessor):
    """Yields results lazily, noting how many records had been sent before each one's work."""

    def __init__(self, producer):
        self.producer = producer
        self.sent_before = []

    def process(self, events: Sequence):
        for result, event in zip(super().process(events), events, strict=True):
            self.sent_before.append((event.data.content_id, len(self.producer.sent)))
            yield result


def make_loop(consumer, producer=None, metrics=None, health=None, processor=None):
    return ConsumeLoop(
        service="ingest",
        consumer=consumer,
        producer=producer or FakeProducer(),
        processor=processor or EchoProcessor(),
        topics=["uploads"],
        dlq_topic="dlq",
        metrics=metrics or ServiceMetrics("test"),
        health=health or Health(),
        stop=consumer.stop,
        flush_timeout_s=5.0,
    )


def run(records, producer=None):
    consumer = FakeConsumer([records], threading.Event())
    producer = producer or FakeProducer()
    make_loop(consumer, producer).run()
    return consumer, producer


def test_poison_goes_to_the_dead_letter_topic_and_the_rest_flows_in_order():
    records = [
        record(upload("a"), topic="uploads", offset=10, key=b"a"),
        record(b"{not json", topic="uploads", offset=11, key=b"k"),
        record(upload("bad-1"), topic="uploads", offset=12, key=b"bad-1"),
        record(upload("b"), topic="uploads", offset=13, key=b"b"),
    ]
    consumer, producer = run(records)
    topics = [(topic, key) for topic, key, _, _ in producer.sent]
    assert topics == [
        ("out", b"a"),
        ("dlq", b"k"),
        ("verdicts", b"k"),
        ("dlq", b"bad-1"),
        ("verdicts", b"bad-1"),
        ("out", b"b"),
    ]
    dead = producer.sent[1]
    assert dead[2] == b"{not json"  # the original bytes, unchanged
    assert dead[3]["eraser-error-class"] == b"MalformedEventError"
    assert dead[3]["eraser-source-topic"] == b"uploads"
    assert dead[3]["eraser-source-offset"] == b"11"
    assert producer.sent[3][3]["eraser-error-reason"] == b"not an image"
    assert consumer.committed == [{0: 14}]
    assert consumer.closed
    assert consumer.topics == ["uploads"]


def test_each_records_output_is_sent_before_the_next_record_is_processed():
    consumer, producer = FakeConsumer([], threading.Event()), FakeProducer()
    consumer.batches = [
        [record(upload(c), topic="uploads", offset=n, key=c.encode()) for n, c in enumerate("abc")]
    ]
    processor = OneAtATimeProcessor(producer)
    make_loop(consumer, producer, processor=processor).run()
    # Poison would be sent in between too; here every record is valid and yields one output.
    assert processor.sent_before == [("a", 0), ("b", 1), ("c", 2)]
    assert [key for _, key, _, _ in producer.sent] == [b"a", b"b", b"c"]
    assert consumer.committed == [{0: 3}]


def test_nothing_is_committed_when_the_broker_refuses_output():
    with pytest.raises(RuntimeError, match="broker said no"):
        run([record(upload("a"), topic="uploads", offset=0)], FakeProducer(fail=True))


def test_an_unacknowledged_flush_times_out_and_stops_the_loop_without_a_commit():
    consumer = FakeConsumer([[record(upload("a"), topic="uploads", offset=0)]], threading.Event())
    producer = SilentBrokerProducer()
    with pytest.raises(KafkaTimeoutError):
        make_loop(consumer, producer).run()
    assert producer.flush_timeouts[0] == 5.0  # the batch's flush, bounded by flush_timeout_s
    assert consumer.committed == []
    assert consumer.closed


def test_commits_cover_each_partition_to_its_last_record():
    records = [
        record(upload(c), topic="uploads", partition=p, offset=o)
        for c, p, o in (("a", 0, 5), ("b", 1, 7), ("c", 0, 6))
    ]
    consumer, _ = run(records)
    assert consumer.committed == [{0: 7, 1: 8}]


def test_a_clean_stop_commits_what_asynchronous_commits_had_not_yet_confirmed():
    batch = [record(upload("a"), topic="uploads", offset=41)]
    consumer = FakeConsumer([batch], threading.Event(), confirm=False)
    make_loop(consumer).run()
    assert consumer.committed == [{0: 42}, {0: 42}]  # the asynchronous one, then the final one


def test_a_revoked_partition_is_committed_at_once_and_never_again():
    batches = [
        [record(upload("a"), topic="uploads", partition=0, offset=10)],
        [record(upload("b"), topic="uploads", partition=1, offset=20)],
        ("revoke", [P0, P1]),
        ("assign", [P1]),
        [record(upload("c"), topic="uploads", partition=1, offset=21)],
    ]
    consumer = FakeConsumer(batches, threading.Event(), confirm=False)
    make_loop(consumer).run()
    assert consumer.committed == [
        {0: 11},
        {0: 11, 1: 21},
        {0: 11, 1: 21},  # on revocation: what had been processed, before the partitions go
        {1: 22},  # partition 0 has a new owner: no offset of ours may overwrite its progress
        {1: 22},  # the final commit
    ]


def test_lost_partitions_are_forgotten_without_a_commit():
    batches = [
        [record(upload("a"), topic="uploads", partition=0, offset=10)],
        ("lose", [P0, P1]),
        ("assign", [P1]),
    ]
    consumer = FakeConsumer(batches, threading.Event(), confirm=False)
    make_loop(consumer).run()
    assert consumer.committed == [{0: 11}]  # the asynchronous commit before the eviction only


def lag_series(metrics):
    (family,) = [m for m in metrics.exported.collect() if m.name.endswith("consumer_lag_messages")]
    return {(s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}


def test_lag_is_reported_per_topic_and_partition_and_revoked_partitions_disappear():
    stop = threading.Event()
    consumer = FakeConsumer([("revoke", [P0, P1]), ("assign", [P1])], stop)
    consumer.highwaters = {P0: 7, P1: 3}
    metrics = ServiceMetrics("test")
    seen = []
    consumer.on_poll.append(lambda: seen.append(lag_series(metrics)))
    make_loop(consumer, metrics=metrics).run()
    assert seen == [
        {},  # before joining the group
        {("uploads", "0"): 7, ("uploads", "1"): 3},
        {},  # revoked, though assignment() still lists them until the rebalance completes
        {("uploads", "1"): 3},  # only what this process holds now
    ]


def readiness_during_run(consumer, health=None):
    health = health or Health()
    seen = []
    consumer.on_poll.append(lambda: seen.append(health.readiness()))
    make_loop(consumer, health=health).run()
    assert health.readiness()[0] is False  # stopped
    return seen[-1]


def test_a_process_holding_no_partitions_is_ready_and_says_so():
    consumer = FakeConsumer([], threading.Event(), assigned=())
    assert readiness_during_run(consumer) == (True, "ready\nassigned: none")


def test_readiness_shows_the_assignment():
    consumer = FakeConsumer([], threading.Event(), assigned=(P1, P0))
    assert readiness_during_run(consumer) == (True, "ready\nassigned: uploads[0,1]")


def test_not_ready_while_the_brokers_do_not_answer():
    consumer = FakeConsumer([], threading.Event())
    consumer.answers = False
    ready, body = readiness_during_run(consumer)
    assert not ready
    assert body.startswith("the brokers have not answered yet")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class SlowFlushProducer(FakeProducer):
    """A flush that takes 90 s of the clock; records liveness while it runs."""

    def __init__(self, clock, health):
        super().__init__()
        self.clock, self.health, self.liveness = clock, health, []

    def flush(self, timeout=None):
        self.clock.now += 90
        self.liveness.append(self.health.liveness())


def test_liveness_fails_while_an_iteration_overruns_and_recovers_with_the_next():
    clock = Clock()
    health = Health(liveness_timeout_s=60, clock=clock)
    producer = SlowFlushProducer(clock, health)
    batches = [[record(upload(c), topic="uploads", offset=n)] for n, c in enumerate("ab")]
    consumer = FakeConsumer(batches, threading.Event())
    alive_at_polls = []
    consumer.on_poll.append(lambda: alive_at_polls.append(health.liveness()))
    make_loop(consumer, producer, health=health).run()
    overrun = (False, "the consume loop has not completed an iteration for 90 s")
    # Each batch's flush overruns; the final flush while stopping is not judged.
    assert producer.liveness == [overrun, overrun, (True, "alive")]
    assert alive_at_polls == [(True, "alive")] * 4


def test_commits_are_spaced_by_the_interval_and_the_last_batches_are_committed_when_it_ends():
    now = [0.0]
    batches = [
        [record(upload(c), topic="uploads", partition=0, offset=o)]
        for c, o in (("a", 10), ("b", 11), ("c", 12))
    ]
    consumer = FakeConsumer([*batches, [], []], threading.Event())
    consumer.on_poll.append(lambda: now.__setitem__(0, now[0] + 0.3))
    loop = ConsumeLoop(
        service="ingest",
        consumer=consumer,
        producer=FakeProducer(),
        processor=EchoProcessor(),
        topics=["uploads"],
        dlq_topic="dlq",
        metrics=ServiceMetrics("test"),
        health=Health(),
        stop=consumer.stop,
        flush_timeout_s=5.0,
        commit_interval_s=1.0,
        clock=lambda: now[0],
    )
    loop.run()
    # the first batch at once; "b" and "c" inside the next second; then, with no new records,
    # one commit of both once the second is over, and nothing left for the final commit
    assert consumer.committed == [{0: 11}, {0: 13}]

import threading
from collections.abc import Sequence

import pytest
from kafka import TopicPartition

from services.shared.errors import MediaUndecodableError, PoisonError
from services.shared.kafka import ConsumeLoop, Outgoing, Result
from services.shared.metrics import Health, ServiceMetrics
from services.shared.schemas import UploadReceived, encode, new_event
from tests.records import record


class FakeConsumer:
    """Hands out one batch, then stops the loop; records what was committed."""

    def __init__(self, records, stop):
        self.batches = [records]
        self.stop = stop
        self.committed = []
        self.closed = False

    def poll(self, timeout_ms):
        if not self.batches:
            self.stop.set()
            return {}
        batch = self.batches.pop(0)
        by_partition = {}
        for r in batch:
            by_partition.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return by_partition

    def assignment(self):
        return {TopicPartition("uploads", 0)}

    def highwater(self, tp):
        return None

    def commit(self, offsets):
        self.committed.append({tp.partition: meta.offset for tp, meta in offsets.items()})

    def commit_async(self, offsets, callback):
        self.commit(offsets)
        callback(offsets, None)

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


def run(records, producer=None):
    stop = threading.Event()
    consumer = FakeConsumer(records, stop)
    producer = producer or FakeProducer()
    loop = ConsumeLoop(
        service="ingest",
        consumer=consumer,
        producer=producer,
        processor=EchoProcessor(),
        dlq_topic="dlq",
        metrics=ServiceMetrics("test"),
        health=Health(),
        stop=stop,
    )
    loop.run()
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


def test_nothing_is_committed_when_the_broker_refuses_output():
    with pytest.raises(RuntimeError, match="broker said no"):
        run([record(upload("a"), topic="uploads", offset=0)], FakeProducer(fail=True))


def test_commits_cover_each_partition_to_its_last_record():
    records = [
        record(upload(c), topic="uploads", partition=p, offset=o)
        for c, p, o in (("a", 0, 5), ("b", 1, 7), ("c", 0, 6))
    ]
    consumer, _ = run(records)
    assert consumer.committed == [{0: 7, 1: 8}]


class SlowCommitConsumer(FakeConsumer):
    """Acknowledges asynchronous commits only when asked: as if the process stopped first."""

    def commit_async(self, offsets, callback):
        pass


def test_a_clean_stop_commits_what_asynchronous_commits_had_not_yet_confirmed():
    stop = threading.Event()
    consumer = SlowCommitConsumer([record(upload("a"), topic="uploads", offset=41)], stop)
    ConsumeLoop(
        service="ingest",
        consumer=consumer,
        producer=FakeProducer(),
        processor=EchoProcessor(),
        dlq_topic="dlq",
        metrics=ServiceMetrics("test"),
        health=Health(),
        stop=stop,
    ).run()
    assert consumer.committed == [{0: 42}]

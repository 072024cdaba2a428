import threading

from kafka import TopicPartition

from services.shared import follower as follower_module
from services.shared.config import KafkaSettings
from services.shared.follower import TopicFollower
from tests.records import record

TP = TopicPartition("registry", 0)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class ScriptedConsumer:
    """A registry topic that grows to four records; each poll takes five seconds of the clock."""

    def __init__(self, script, clock, stop):
        self.script, self.clock, self.stop = list(script), clock, stop
        self.position_ = 0
        self.highwater_ = None

    def partitions_for_topic(self, topic):
        return {0}

    def assign(self, partitions):
        assert partitions == [TP]

    def seek_to_beginning(self, tp):
        self.position_ = 0

    def end_offsets(self, partitions):
        return {TP: 4}

    def poll(self, timeout_ms):
        self.clock.now += 5
        if not self.script:
            self.stop.set()
            return {}
        offsets, self.highwater_ = self.script.pop(0)
        records = [record(b"{}", topic="registry", offset=o) for o in offsets]
        self.position_ += len(records)
        return {TP: records} if records else {}

    def position(self, tp):
        return self.position_

    def highwater(self, tp):
        return self.highwater_

    def close(self, autocommit):
        pass


def test_seconds_behind_counts_from_the_last_poll_level_with_the_end_even_when_polls_stop(
    monkeypatch,
):
    clock, stop = Clock(), threading.Event()
    script = [((0, 1), 4), ((2, 3), 4), ((), 4)]
    monkeypatch.setattr(
        follower_module, "KafkaConsumer", lambda **_: ScriptedConsumer(script, clock, stop)
    )
    progress = []
    follower = TopicFollower(
        kafka=KafkaSettings(),
        topic="registry",
        apply=lambda r: None,
        stop=stop,
        on_failure=lambda error: progress.append(error),
        on_progress=lambda behind, seconds: progress.append((behind, seconds)),
        clock=clock,
    )
    follower.start().join()
    assert progress == [
        (2, 5.0),  # behind since the start, at 100
        (0, 5.0),  # the poll that began at 105 ended level with the end
        (0, 5.0),  # and so did the ones at 110
        (0, 5.0),  # and 115
    ]
    assert follower.caught_up
    clock.now += 60  # the follower no longer polls (stuck, or stopped): nothing reports
    assert follower.seconds_behind() == 65.0

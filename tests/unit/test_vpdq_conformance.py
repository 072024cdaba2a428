"""eraser's vPDQ against the hashes Meta publishes for one of its sample videos.

The video and the expected hashes are in tests/data/vpdq (BSD, from facebook/ThreatExchange). The
vpdq tool decodes every frame, converts it to RGB at its native size and hashes it with PDQ;
eraser must give the same frame numbers, timestamps and qualities, and hashes within a few bits
(the colour conversion is FFmpeg's, whose rounding may differ by version).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.hashing import distance
from services.ingest.video import VideoDecoder, VideoLimits, container_of, features
from services.shared.vpdq import parse_tool_line, tool_line

VECTORS = Path(__file__).parents[1] / "data" / "vpdq"
VIDEO = VECTORS / "doorknob-hd-no-bar.mp4"
TOLERANCE = 6  # bits; Meta's PDQ tests allow 16 between implementations


def _expected() -> list[str]:
    return (VECTORS / "doorknob-hd-no-bar.txt").read_text().split()


def _ours(seconds_per_hash: float) -> list[str]:
    data = VIDEO.read_bytes()
    container = container_of(data)
    assert container is not None
    decoder = VideoDecoder(data, container, VideoLimits())
    return [tool_line(number, feature) for number, feature in features(decoder, seconds_per_hash)]


@pytest.fixture(scope="module")
def every_frame() -> list[str]:
    return _ours(0.0)  # frameMod 0 becomes 1: every frame, as the sample hashes were made


def test_every_frame_has_the_same_number_timestamp_and_quality(every_frame):
    expected = _expected()
    assert len(every_frame) == len(expected) == 120
    for ours, theirs in zip(every_frame, expected, strict=True):
        ours_fields, theirs_fields = ours.split(","), theirs.split(",")
        assert ours_fields[0] == theirs_fields[0]  # frame number
        assert ours_fields[1] == theirs_fields[1]  # quality
        assert ours_fields[3] == theirs_fields[3]  # timestamp, to the millisecond


def test_every_hash_is_within_the_tolerance_and_most_are_identical(every_frame):
    pairs = [
        (parse_tool_line(ours)[1].pdq, parse_tool_line(theirs)[1].pdq)
        for ours, theirs in zip(every_frame, _expected(), strict=True)
    ]
    distances = [distance(ours, theirs) for ours, theirs in pairs]
    assert max(distances) <= TOLERANCE
    assert sum(d == 0 for d in distances) >= 0.9 * len(distances)


def test_uploads_are_sampled_once_a_second_on_the_same_frames():
    sampled = _ours(1.0)
    expected = _expected()
    assert [line.split(",")[0] for line in sampled] == ["0", "30", "60", "90"]
    for line in sampled:
        number, feature = parse_tool_line(line)
        _, reference = parse_tool_line(expected[number])
        assert feature.timestamp == reference.timestamp
        assert distance(feature.pdq, reference.pdq) <= TOLERANCE

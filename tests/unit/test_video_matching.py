"""The matcher's video rules: vPDQ against registered videos, frame by frame against photos."""

from __future__ import annotations

import functools
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.bench.video_media import decode, each, edited, excerpt, mirror, resized, slideshow
from services.bench.video_media import encode as encode_video
from services.ingest.hashing import digests
from services.ingest.signals import SignalModels
from services.ingest.video import VideoLimits, container_of
from services.ingest.video_signals import UploadPlan, scan_upload
from services.matcher import building
from services.matcher.applier import RegistryApplier
from services.matcher.handler import MatcherProcessor
from services.matcher.registry import Registry
from services.matcher.video import start_offsets
from services.registrar import hash_file
from services.shared.banks import BankBook
from services.shared.config import PolicySettings, TopicSettings
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import (
    BankPolicy,
    MediaHashed,
    VerdictIssued,
    encode,
    new_event,
)
from tests.images import photo as picture
from tests.images import photo_bytes
from tests.records import record
from tests.videos import clip

T = datetime(2026, 11, 25, tzinfo=UTC)


@functools.cache
def models() -> SignalModels:
    return SignalModels.load()


def upload(data: bytes) -> MediaHashed:
    scan = scan_upload(data, container_of(data), VideoLimits(), UploadPlan(), models())
    return scan.media(f"up-{digests(data).sha256[:8]}", "c", T, data)


class Matcher:
    """Photo and video registries fed through the applier, and the processor over both."""

    def __init__(self, **banks: dict) -> None:
        self.photos, self.videos = Registry(), Registry()
        self.applier = RegistryApplier(self.photos, MatcherMetrics(), self.videos)
        settings = PolicySettings(banks={name: BankPolicy(**p) for name, p in banks.items()})
        self.processor = MatcherProcessor(
            TopicSettings(), BankBook(settings), self.photos, MatcherMetrics(), videos=self.videos
        )
        self.offset = 0

    def register(self, data: bytes, bank: str = "kids") -> str:
        registration = hash_file(data, bank, 50, models=models()).registration
        value = encode(new_event(registration, id=registration.entry_id, source="test"))
        self.applier(record(value, key=registration.entry_id.encode(), offset=self.offset))
        self.offset += 1
        return registration.entry_id

    def withdraw(self, entry_id: str) -> None:
        self.applier(record(None, key=entry_id.encode(), offset=self.offset))
        self.offset += 1

    def verdict(self, hashed: MediaHashed) -> VerdictIssued:
        event = new_event(hashed, id=hashed.upload_id, source="test")
        ((out,),) = self.processor.process([event])
        return VerdictIssued.model_validate(json.loads(out.value)["data"])


@pytest.fixture(scope="module")
def registered():
    matcher = Matcher()
    video = matcher.register(clip(seconds=8, fps=10))
    photo = matcher.register(photo_bytes("coffee.png"))
    return matcher, video, photo


def test_a_registered_video_goes_to_the_video_registry_by_its_frames(registered):
    matcher, _, _ = registered
    assert matcher.videos.counts()["pdq"] > 20  # densely hashed, repeats pruned
    assert matcher.photos.counts()["sha256"] == 1  # the photo alone


@pytest.mark.parametrize(
    "edit",
    [excerpt(2.0, 5.0), resized(120), each(mirror)],
    ids=["excerpt", "smaller", "mirrored"],
)
def test_edited_copies_of_a_registered_video_match_it_with_the_frames_that_matched(
    registered, edit
):
    matcher, video, _ = registered
    verdict = matcher.verdict(upload(edited(clip(seconds=8, fps=10), edit)))
    (match,) = [m for m in verdict.matches if m.signal == "vpdq"]
    assert match.entry_id == video
    assert match.match_percent >= 80
    assert match.timestamps and match.distance <= 31


def test_the_same_file_also_matches_by_its_digests(registered):
    matcher, video, _ = registered
    verdict = matcher.verdict(upload(clip(seconds=8, fps=10)))
    assert {m.signal for m in verdict.matches} == {"sha256", "md5", "vpdq"}
    assert {m.entry_id for m in verdict.matches} == {video}


def test_a_registered_photo_shown_in_a_slideshow_matches_when_it_is_on_screen(registered):
    matcher, _, photo = registered
    pictures = [picture("chelsea.png"), picture("coffee.png"), picture("rocket.jpg")]
    show = encode_video(slideshow(pictures, 3.0, 10, "static", (480, 270)), 10)
    verdict = matcher.verdict(upload(show))
    assert verdict.verdict == "match"
    assert {m.entry_id for m in verdict.matches} == {photo}
    for match in verdict.matches:
        assert match.timestamps and all(3.0 <= t < 6.0 for t in match.timestamps)


def test_unrelated_videos_are_clean(registered):
    matcher, _, _ = registered
    verdict = matcher.verdict(upload(clip("chelsea.png", seconds=6, fps=10)))
    assert verdict.verdict == "clean"


def test_a_bank_may_ask_for_more_of_the_upload_to_match(registered):
    _, _, _ = registered
    strict = Matcher(kids={"vpdq_match_percent": 100.0})
    strict.register(clip(seconds=8, fps=10))
    # An upload that is half the registered video and half something else.
    first = itertools.islice(decode(clip(seconds=8, fps=10)).frames, 40)
    hashed = upload(encode_video([*first, *decode(clip("chelsea.png")).frames], 10))
    assert all(m.signal != "vpdq" for m in strict.verdict(hashed).matches)
    lenient = Matcher(kids={"vpdq_match_percent": 40.0})
    lenient.register(clip(seconds=8, fps=10))
    (match,) = [m for m in lenient.verdict(hashed).matches if m.signal == "vpdq"]
    assert 40 <= match.match_percent < 80 and max(match.timestamps) < 4.0


def test_a_withdrawn_video_stops_matching():
    matcher = Matcher()
    video = matcher.register(clip(seconds=8, fps=10))
    copy = upload(edited(clip(seconds=8, fps=10), excerpt(1.0, 4.0)))
    assert matcher.verdict(copy).verdict == "match"
    matcher.withdraw(video)
    assert matcher.verdict(copy).verdict == "clean"


def test_an_entry_re_registered_as_a_photo_leaves_the_video_registry():
    matcher = Matcher()
    video = hash_file(clip(seconds=4), "kids", 50).registration
    photo = hash_file(photo_bytes("coffee.png"), "kids", 50, models=models()).registration
    for offset, entry in enumerate([video, photo.model_copy(update={"entry_id": video.entry_id})]):
        value = encode(new_event(entry, id=str(offset), source="test"))
        matcher.applier(record(value, key=video.entry_id.encode(), offset=offset))
    assert matcher.videos.counts()["pdq"] == 0
    assert matcher.photos.counts()["pdq"] > 0
    assert matcher.verdict(upload(clip(seconds=4))).verdict == "clean"


def test_each_registry_applies_only_the_records_its_snapshot_does_not_hold():
    photos = Registry(building.build(None, [], {0: 10}, Path()))
    videos = Registry(building.build(None, [], {0: 4}, Path()))
    assert start_offsets(photos, videos) == {0: 4}
    assert start_offsets(photos, Registry()) == {}  # a registry without a snapshot reads it all
    applier = RegistryApplier(photos, MatcherMetrics(), videos)
    entry = hash_file(photo_bytes("coffee.png"), "kids", 50, models=models()).registration
    value = encode(new_event(entry, id="r", source="test"))
    applier(record(value, key=entry.entry_id.encode(), offset=7))  # the photo snapshot has it
    assert photos.counts()["sha256"] == 0
    applier(record(value, key=entry.entry_id.encode(), offset=10))
    assert photos.counts()["sha256"] == 1

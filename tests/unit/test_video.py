"""Ingest's video path: which bytes are videos, vPDQ sampling, the signals kept, and hard limits."""

from __future__ import annotations

import base64
import io
import os

import av
import numpy as np
import pdqhash
import pytest
from av.video.reformatter import Interpolation

from services.ingest import video_signals
from services.ingest.fetching import MediaFetcher
from services.ingest.handler import IngestProcessor
from services.ingest.hashing import to_hex
from services.ingest.signals import SignalModels
from services.ingest.video import VideoDecoder, VideoLimits, container_of
from services.ingest.video_signals import UploadPlan, VideoIngest, reference_frames, scan_upload
from services.shared.config import (
    IngestSettings,
    KafkaSettings,
    MediaSettings,
    TopicSettings,
    VideoSettings,
)
from services.shared.errors import MediaUndecodableError
from services.shared.metrics import IngestMetrics
from services.shared.schemas import UploadReceived, new_event
from tests.images import encode as encode_image
from tests.images import gradient
from tests.videos import clip

NO_MODELS = SignalModels()


def _scan(data: bytes, limits: VideoLimits | None = None, plan: UploadPlan | None = None):
    container = container_of(data)
    assert container is not None
    return scan_upload(data, container, limits or VideoLimits(), plan or UploadPlan(), NO_MODELS)


def _refused(data: bytes, limits: VideoLimits) -> str:
    with pytest.raises(MediaUndecodableError) as refused:
        _scan(data, limits)
    return refused.value.reason


def test_videos_are_told_apart_from_images_by_their_first_bytes():
    assert container_of(clip()).label == "MP4"
    assert container_of(clip(container="mov")).label == "MOV"
    assert container_of(clip(codec="libvpx-vp9", container="webm")).demuxer == "matroska"
    assert container_of(b"\0\0\0\x1cftypavif" + bytes(20)) is None  # an AVIF still image
    assert container_of(encode_image(gradient(), "JPEG")) is None
    assert container_of(encode_image(gradient(), "PNG")) is None
    assert container_of(b"") is None


def test_an_upload_is_sampled_once_a_second_as_vpdq_does():
    scan = _scan(clip(seconds=4, fps=10))
    hashed = scan.hashed
    assert (hashed.frames_decoded, hashed.frame_rate, hashed.duration_s) == (40, 10.0, 4.0)
    assert [f.number for f in hashed.frames] == [0, 10, 20, 30]
    assert [f.timestamp for f in hashed.frames] == [0.0, 1.0, 2.0, 3.0]
    assert (scan.width, scan.height, scan.label) == (320, 180, "MP4")


def test_each_frame_carries_its_vpdq_hash_and_its_mirror_images():
    data = clip(seconds=2, fps=10)
    scan = _scan(data)
    with av.open(io.BytesIO(data)) as video:
        frame = next(video.decode(video=0))
        rgb = frame.reformat(
            format="rgb24", interpolation=Interpolation.AREA | Interpolation.ACCURATE_RND
        )
        first = rgb.to_ndarray()
    assert scan.hashed.frames[0].pdq[0] == to_hex(pdqhash.compute(first)[0])
    assert scan.hashed.frames[0].pdq[1] == to_hex(pdqhash.compute(first[:, ::-1].copy())[0])


@pytest.mark.parametrize("codec, container", [("libvpx-vp9", "webm"), ("libsvtav1", "mp4")])
def test_vp9_and_av1_are_decoded_too(codec, container):
    assert [
        f.number for f in _scan(clip(seconds=2, codec=codec, container=container)).hashed.frames
    ] == [0, 10]


def test_a_letterboxed_video_also_carries_its_content_without_bars():
    scan = _scan(clip(motion="static", seconds=1))  # the photograph fitted into 16:9 with bars
    assert len(scan.hashed.frames[0].pdq) >= 4


def test_long_videos_are_sampled_sparser_to_cap_the_hashed_frames():
    scan = _scan(clip(seconds=4, fps=10), plan=UploadPlan(max_hashed_frames=2))
    assert scan.hashed.seconds_per_hash == 2.0
    assert [f.number for f in scan.hashed.frames] == [0, 20]


def test_key_frames_get_embeddings_and_keypoints_up_to_the_cap():
    data = clip(seconds=6, fps=5)
    container = container_of(data)
    scan = scan_upload(
        data, container, VideoLimits(), UploadPlan(key_frames=2), SignalModels.load()
    )
    keys = [frame for frame in scan.hashed.frames if frame.embeddings]
    assert 1 <= len(keys) <= 2
    assert all(frame.keypoints for frame in keys)
    assert all(not frame.keypoints for frame in scan.hashed.frames if not frame.embeddings)


@pytest.mark.parametrize(
    "limits, reason",
    [
        (VideoLimits(max_pixels=100 * 100), "video is 320x180, over the limit"),
        (VideoLimits(max_duration_s=2), "video declares 4 s, over the limit"),
        (VideoLimits(max_frames=10), "video declares 40 frames, too many"),
        (VideoLimits(max_scan_s=1e-9), "video took longer than its 1e-09 s limit to scan"),
    ],
)
def test_limits_are_checked(limits, reason):
    assert _refused(clip(seconds=4, fps=10), limits) == reason


def test_a_stream_that_declares_no_length_is_stopped_while_decoding():
    webm = clip(seconds=4, fps=10, codec="libvpx-vp9", container="matroska")
    assert _refused(webm, VideoLimits(max_frames=10)) == "video has more than 10 frames"


@pytest.mark.parametrize("container", ["mp4", "webm"])
@pytest.mark.parametrize("kept", [0.3, 0.9])
def test_truncated_videos_are_refused(container, kept):
    codec = "libx264" if container == "mp4" else "libvpx-vp9"
    data = clip(seconds=4, fps=10, codec=codec, container=container)
    reason = _refused(data[: int(len(data) * kept)], VideoLimits())
    assert any(
        why in reason for why in ("truncated", "corrupt", "unreadable", "no decodable frame")
    )


def test_junk_after_a_video_header_and_codecs_not_allowed_are_refused():
    assert "video" in _refused(b"\0\0\0\x18ftypisom" + os.urandom(4000), VideoLimits())
    mpeg2 = clip(seconds=1, codec="mpeg2video", container="matroska")
    assert _refused(mpeg2, VideoLimits()) == "video codec 'mpeg2video' is not supported"
    assert _refused(_audio_only(), VideoLimits()) == "no video stream"


def test_a_registered_video_keeps_every_changed_frame_with_its_views_but_not_repeats():
    moving = reference_frames(clip(seconds=4, fps=10), container_of(clip()), VideoLimits())
    still = clip(motion="static", seconds=4, fps=10)
    (kept,) = reference_frames(still, container_of(still), VideoLimits())  # 40 frames, one picture
    assert len(kept.views) >= 2  # its centre, and the photograph without the bars around it
    assert len(moving) > 10  # a pan: the picture keeps changing
    times = [frame.feature.timestamp for frame in moving]
    assert times == sorted(times) and times[0] == 0.0


def test_a_registration_too_long_for_one_record_is_pruned_coarser_then_refused(monkeypatch):
    data = clip(seconds=4, fps=10)
    every = reference_frames(data, container_of(data), VideoLimits())
    monkeypatch.setattr(video_signals, "REFERENCE_BYTES", 77 * len(every))  # no room for views
    coarser = reference_frames(data, container_of(data), VideoLimits())
    assert 0 < len(coarser) < len(every)
    monkeypatch.setattr(video_signals, "REFERENCE_BYTES", 10)
    with pytest.raises(MediaUndecodableError, match="register it in parts"):
        reference_frames(data, container_of(data), VideoLimits())


def test_the_decoder_reports_what_the_header_declares():
    data = clip(seconds=4, fps=10)
    decoder = VideoDecoder(data, container_of(data), VideoLimits())
    assert (decoder.width, decoder.height, decoder.frame_rate, decoder.declared_s) == (
        320,
        180,
        10.0,
        4.0,
    )
    assert decoder.frame_mod(1.0) == 10 and decoder.frame_mod(0.01) == 1


def _audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        for n in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, n * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def test_the_scan_limit_leaves_a_whole_batch_of_videos_inside_the_poll_interval():
    for interval_ms, batch_size, limit_s, expected_s in [
        (60_000, 4, 60.0, 7.5),
        (300_000, 2, 60.0, 60.0),
        (3_000, 1, 60.0, 1.5),
    ]:
        settings = IngestSettings(
            kafka=KafkaSettings(max_poll_interval_ms=interval_ms),
            batch_size=batch_size,
            video=VideoSettings(max_scan_s=limit_s),
        )
        assert settings.video.max_scan_s == expected_s
        # fetching gets the other half
        assert batch_size * settings.video.max_scan_s <= interval_ms / 1000 / 2


def test_caps_that_could_outgrow_a_kafka_record_are_refused():
    VideoSettings(max_hashed_frames=300, key_frames=16)
    with pytest.raises(ValueError, match="over the 900000 B a hashed-media record may take"):
        VideoSettings(max_hashed_frames=1200, key_frames=32)


def _upload(data: bytes):
    upload = UploadReceived(content_id="c-1", media_b64=base64.b64encode(data).decode())
    return new_event(upload, id="u-1", source="test")


def test_ingest_hashes_a_video_upload_and_counts_its_cpu_per_second_of_video():
    metrics = IngestMetrics()
    processor = IngestProcessor(
        TopicSettings(),
        MediaFetcher(MediaSettings()),
        64_000_000,
        metrics,
        NO_MODELS,
        VideoIngest(VideoSettings(), metrics),
    )
    hashed = processor.scan(_upload(clip(seconds=3, fps=10)))
    assert hashed.pdq == [] and hashed.video is not None and hashed.format == "MP4"
    assert [f.timestamp for f in hashed.video.frames] == [0.0, 1.0, 2.0]
    assert metrics.video_decoded_seconds._value.get() == 3.0
    assert metrics.video_cpu_seconds._value.get() > 0


def test_with_video_off_a_video_is_an_undecodable_upload_as_before():
    processor = IngestProcessor(
        TopicSettings(), MediaFetcher(MediaSettings()), 64_000_000, IngestMetrics(), NO_MODELS
    )
    with pytest.raises(MediaUndecodableError, match="not an image"):
        processor.scan(_upload(clip(seconds=1)))

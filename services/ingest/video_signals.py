"""The signals of one video: for every video upload (ingest) and every registered video.

An upload is hashed at one frame a second (vPDQ's sampling, sparser for long videos so at most
``max_hashed_frames`` are hashed). Each hashed frame gets what an image gets from PDQ: the frame's
hash as vPDQ computes it, its mirror image's, and (upright, mirrored) of its content without
letterbox bars or frames (``signals.pdq_views``). Scene changes, up to ``key_frames`` of them, are
key frames and also get the image embeddings and keypoints (``signals.learned_signals``), so a
registered photo shown zoomed or panned in a slideshow can still be found. A registered video is
hashed densely instead (5 frames a second), keeping a frame only when it differs from the last
kept one: an upload's frames, sampled at other instants and re-encoded, then still land near one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from services.ingest.hashing import digests, distance
from services.ingest.signals import MIRRORED, SignalModels, learned_signals, pdq_views
from services.ingest.video import Container, VideoDecoder, VideoLimits, features
from services.shared.config import VideoSettings
from services.shared.errors import MediaUndecodableError
from services.shared.keypoints import keypoints_to_text
from services.shared.metrics import IngestMetrics
from services.shared.schemas import (
    CloudEvent,
    MediaHashed,
    UploadReceived,
    VideoFrame,
    VideoHashed,
    embedding_to_text,
)
from services.shared.vpdq import QUALITY_THRESHOLD, Feature

REFERENCE_SECONDS_PER_HASH = 0.2  # registered videos: 5 frames a second (every frame below 5 fps)
# A registered frame within this many bits of the last kept one adds nothing: an upload's frame
# near it is near that one too (docs/benchmarks.md measures recall with it).
REFERENCE_PRUNE_BITS = 12
MAX_REFERENCE_FRAMES = 10_000  # what one registration record holds
# A frame this far from every key frame so far is a new scene (unrelated frames are ~128 apart).
KEY_FRAME_CHANGE = 64


@dataclass(frozen=True)
class VideoScan:
    """What ingest keeps of a video upload, and what the scan measured."""

    hashed: VideoHashed
    width: int
    height: int
    label: str

    @property
    def best_quality(self) -> int:
        """The highest PDQ quality of any hashed frame."""
        return max(frame.quality for frame in self.hashed.frames)


@dataclass(frozen=True)
class UploadPlan:
    """How to sample and hash an upload: vPDQ's step, the cap on hashed frames, key frames."""

    seconds_per_hash: float = 1.0
    max_hashed_frames: int = 300
    key_frames: int = 16


class VideoIngest:
    """Ingest's video path: a video upload's bytes in, its ``MediaHashed`` out."""

    def __init__(self, settings: VideoSettings, metrics: IngestMetrics) -> None:
        self._limits = VideoLimits(
            settings.max_pixels, settings.max_duration_s, settings.max_frames, settings.max_scan_s
        )
        self._plan = UploadPlan(
            settings.seconds_per_hash, settings.max_hashed_frames, settings.key_frames
        )
        self._metrics = metrics

    def scan(
        self,
        event: CloudEvent[UploadReceived],
        data: bytes,
        container: Container,
        models: SignalModels,
    ) -> MediaHashed:
        """Decode and hash an uploaded video; the CPU it took is counted per second of video.

        Raises:
            MediaUndecodableError: not a decodable video within the limits.
        """
        started = time.process_time()
        scan = scan_upload(data, container, self._limits, self._plan, models)
        self._metrics.video_cpu_seconds.inc(time.process_time() - started)
        self._metrics.video_decoded_seconds.inc(scan.hashed.duration_s)
        files = digests(data)
        return MediaHashed(
            upload_id=event.id,
            content_id=event.data.content_id,
            uploaded_at=event.time,
            sha256=files.sha256,
            md5=files.md5,
            pdq=[],
            pdq_quality=scan.best_quality,
            width=scan.width,
            height=scan.height,
            format=scan.label,
            video=scan.hashed,
        )


def scan_upload(
    data: bytes,
    container: Container,
    limits: VideoLimits,
    plan: UploadPlan,
    models: SignalModels,
) -> VideoScan:
    """Decode an uploaded video and compute the signals of its sampled frames.

    Raises:
        MediaUndecodableError: not a decodable video within ``limits``.
    """
    decoder = VideoDecoder(data, container, limits)
    seconds_per_hash = _upload_step(decoder, plan, limits)
    frames = list(_upload_frames(decoder, seconds_per_hash, plan, models))
    hashed = VideoHashed(
        frame_rate=decoder.frame_rate,
        frames_decoded=decoder.decoded,
        duration_s=decoder.decoded / decoder.frame_rate,
        seconds_per_hash=seconds_per_hash,
        frames=frames,
    )
    return VideoScan(hashed, decoder.width, decoder.height, decoder.label)


def reference_features(data: bytes, container: Container, limits: VideoLimits) -> list[Feature]:
    """The frames a registered video keeps: sampled densely, near-repeats pruned.

    Raises:
        MediaUndecodableError: not a decodable video within ``limits``, or too many frames left
            for one registration.
    """
    kept: list[Feature] = []
    decoder = VideoDecoder(data, container, limits)
    for _, feature in features(decoder, REFERENCE_SECONDS_PER_HASH):
        if feature.quality < QUALITY_THRESHOLD:
            continue  # vPDQ matching ignores such frames on both sides
        if kept and distance(feature.pdq, kept[-1].pdq) <= REFERENCE_PRUNE_BITS:
            continue
        kept.append(feature)
        if len(kept) > MAX_REFERENCE_FRAMES:
            raise MediaUndecodableError(
                f"video keeps over {MAX_REFERENCE_FRAMES} distinct frames: register it in parts"
            )
    return kept


def _upload_step(decoder: VideoDecoder, plan: UploadPlan, limits: VideoLimits) -> float:
    """Seconds per hash: the plan's, or sparser so that at most ``max_hashed_frames`` are hashed.

    A video that declares no duration is taken to be as long as the limit allows.
    """
    seconds = decoder.declared_s or limits.max_duration_s
    return max(plan.seconds_per_hash, seconds / plan.max_hashed_frames)


def _upload_frames(
    decoder: VideoDecoder, seconds_per_hash: float, plan: UploadPlan, models: SignalModels
) -> Iterator[VideoFrame]:
    keys = _KeyFrames(plan.key_frames, (decoder.declared_s or 0.0) / max(1, plan.key_frames))
    for hashed, frame in enumerate(decoder.sampled(decoder.frame_mod(seconds_per_hash))):
        if hashed >= plan.max_hashed_frames:
            raise MediaUndecodableError("video has more frames than its header declares")
        hashes, quality, views = pdq_views(frame.pixels)
        own = [hashes[0], hashes[MIRRORED], *hashes[8:12]]
        if not keys.take(hashes[0], quality, frame.timestamp):
            yield VideoFrame(
                number=frame.number, timestamp=frame.timestamp, quality=quality, pdq=own
            )
        else:
            embeddings, keypoints = learned_signals(views, models)
            yield VideoFrame(
                number=frame.number,
                timestamp=frame.timestamp,
                quality=quality,
                pdq=own,
                embeddings=[embedding_to_text(vector) for vector in embeddings[:3]],
                keypoints=keypoints_to_text(keypoints) if keypoints else None,
            )
        decoder.check_time()


class _KeyFrames:
    """Chooses key frames: new scenes, spread over the video, at most ``count``."""

    def __init__(self, count: int, spacing_s: float) -> None:
        self._count, self._spacing_s = count, spacing_s
        self._hashes: list[str] = []
        self._last_s = -spacing_s

    def take(self, code: str, quality: int, timestamp: float) -> bool:
        """Whether this frame is a key frame.

        It is if it is not flat, unlike every key frame so far, and not sooner after the last
        one than an even share of the key frames allows.
        """
        if len(self._hashes) >= self._count or quality < QUALITY_THRESHOLD:
            return False
        if timestamp - self._last_s < self._spacing_s:
            return False
        if any(distance(code, key) <= KEY_FRAME_CHANGE for key in self._hashes):
            return False
        self._hashes.append(code)
        self._last_s = timestamp
        return True

"""The signals of one video: for every video upload (ingest) and every registered video.

An upload is hashed at one frame a second (vPDQ's sampling, sparser for long videos so at most
``max_hashed_frames`` are hashed). Each hashed frame gets its hash as vPDQ computes it, its mirror
image's, and its **views**: the centre 70% of the frame (clear of the logos and watermarks added
in corners) and its content without letterbox bars or frames (``trimming.py``). Scene changes, up
to ``key_frames`` of them, are key frames and also get the image embeddings and keypoints
(``signals.learned_signals``), so a registered photo shown zoomed or panned in a slideshow can
still be found, and their largest faces (when ingest looks for faces), so a registered child's
face swapped into a video is too. A registered video is hashed at every frame instead, keeping a
frame (and its views) only when it is more than 12 bits from the last one kept: an upload's
frames, sampled at other instants and re-encoded, then land near one even in fast motion, while a
still scene costs one row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from services.ingest.faces import faces_seen
from services.ingest.hashing import digests, distance, pdq, pdq_dihedral
from services.ingest.signals import MIRRORED, SignalModels, learned_signals, thumbnail
from services.ingest.trimming import content_views
from services.ingest.video import Container, VideoDecoder, VideoLimits
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

REFERENCE_SECONDS_PER_HASH = 0.0  # registered videos: every frame (vPDQ's step, at least 1)
# A registered frame within this many bits of the last kept one adds nothing: an upload's frame
# near it is near that one too (docs/benchmarks.md measures recall with it). A long video whose
# kept frames would not fit one registration record is pruned coarser, up to the last value.
REFERENCE_PRUNE_BITS = 12
COARSER_PRUNE_BITS = (16, 20, 24)
# One registration record stays under 900 KB: 77 bytes a frame (vPDQ) and 67 a view.
REFERENCE_BYTES, FEATURE_BYTES, VIEW_BYTES = 900_000, 77, 67
CENTRE = 0.7  # the share of each side the centre view keeps
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

    def media(
        self, upload_id: str, content_id: str, uploaded_at: datetime, data: bytes
    ) -> MediaHashed:
        """The hashes-topic record of this scan of the video ``data``."""
        files = digests(data)
        return MediaHashed(
            upload_id=upload_id,
            content_id=content_id,
            uploaded_at=uploaded_at,
            sha256=files.sha256,
            md5=files.md5,
            pdq=[],
            pdq_quality=self.best_quality,
            width=self.width,
            height=self.height,
            format=self.label,
            video=self.hashed,
        )


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
        return scan.media(event.id, event.data.content_id, event.time, data)


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


@dataclass(frozen=True)
class Kept:
    """A registered video's frame: its vPDQ feature and the PDQ of its views."""

    feature: Feature
    views: list[str]


def reference_frames(
    data: bytes,
    container: Container,
    limits: VideoLimits,
    seconds_per_hash: float = REFERENCE_SECONDS_PER_HASH,
    prune_bits: int = REFERENCE_PRUNE_BITS,
) -> list[Kept]:
    """The frames a registered video keeps: sampled densely, near-repeats pruned, with views.

    (The benchmark compares other densities and pruning distances; -1 prunes nothing.)

    Raises:
        MediaUndecodableError: not a decodable video within ``limits``, or too many frames left
            for one registration record even pruned at the coarsest.
    """
    kept: list[Kept] = []
    decoder = VideoDecoder(data, container, limits)
    for frame in decoder.sampled(decoder.frame_mod(seconds_per_hash)):
        code, quality = pdq(frame.pixels)
        if quality < QUALITY_THRESHOLD:
            continue  # vPDQ matching ignores such frames on both sides
        if kept and distance(code, kept[-1].feature.pdq) <= prune_bits:
            continue
        small = thumbnail(frame.pixels)
        views = _view_hashes([_centre(small), *content_views(small)])
        kept.append(Kept(Feature(code, quality, round(frame.timestamp, 3)), views))
    return _fitted(kept)


def _fitted(kept: list[Kept]) -> list[Kept]:
    """``kept``, pruned coarser until one registration record holds it."""
    for bits in COARSER_PRUNE_BITS:
        if _record_bytes(kept) <= REFERENCE_BYTES:
            return kept
        coarser = kept[:1]
        for frame in kept[1:]:
            if distance(frame.feature.pdq, coarser[-1].feature.pdq) > bits:
                coarser.append(frame)
        kept = coarser
    if _record_bytes(kept) > REFERENCE_BYTES:
        raise MediaUndecodableError(
            f"video keeps {len(kept)} distinct frames, too many for one entry: register it in parts"
        )
    return kept


def _record_bytes(kept: list[Kept]) -> int:
    return sum(FEATURE_BYTES + VIEW_BYTES * len(frame.views) for frame in kept)


def _centre(pixels: np.ndarray) -> np.ndarray:
    """The middle ``CENTRE`` of each side: clear of what is added in corners and along edges."""
    height, width = pixels.shape[:2]
    h, w = round(height * CENTRE), round(width * CENTRE)
    top, left = (height - h) // 2, (width - w) // 2
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


def _view_hashes(views: list[np.ndarray]) -> list[str]:
    """PDQ of each view that has detail enough to match on (quality >= 50)."""
    hashed = [pdq(view) for view in views]
    return [code for code, quality in hashed if quality >= QUALITY_THRESHOLD]


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
        whole = pdq_dihedral(frame.pixels)
        quality, small = whole.quality, thumbnail(frame.pixels)
        views = content_views(small)
        own = [whole.original, whole.dihedral[MIRRORED], *_view_hashes([_centre(small), *views])]
        if not keys.take(whole.original, quality, frame.timestamp):
            yield VideoFrame(
                number=frame.number, timestamp=frame.timestamp, quality=quality, pdq=own
            )
        else:
            embeddings, keypoints = learned_signals([small, *views], models)
            faces = models.faces.faces(frame.pixels, models.max_faces) if models.faces else []
            yield VideoFrame(
                number=frame.number,
                timestamp=frame.timestamp,
                quality=quality,
                pdq=own,
                embeddings=[embedding_to_text(vector) for vector in embeddings[:3]],
                keypoints=keypoints_to_text(keypoints) if keypoints else None,
                faces=faces_seen(faces, 1.0),
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

"""Turns protected images and videos into registrations: hashes computed locally, media dropped.

Behind ``eraser register`` and the admin API's image upload. The bytes are hashed with the same
decoders and PDQ code as ingest and never kept or sent anywhere; only the resulting
``eraser.registration.v1`` is published (``admin/publishing.py``). A video is registered by its
frames, hashed densely (``ingest/video_signals.py``), and its file digests. Entry ids are derived
from (bank, SHA-256), so registering the same file twice updates one entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.ingest.decoding import decode
from services.ingest.hashing import FileDigests, digests
from services.ingest.signals import ReferenceSignals, SignalModels, reference_signals
from services.ingest.video import VideoLimits, container_of
from services.ingest.video_signals import Kept, reference_frames
from services.shared.keypoints import keypoints_to_text
from services.shared.schemas import EntryRegistered, Signals, embedding_to_text

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
# Registration is an operator's action on their own files; the limits only guard against mistakes.
_MAX_PIXELS = 200_000_000
_VIDEO_LIMITS = VideoLimits(
    max_pixels=7680 * 4320, max_duration_s=4 * 3600.0, max_frames=4 * 3600 * 120, max_scan_s=3600.0
)


@dataclass(frozen=True)
class Hashed:
    """A registration built from a file, and a note if its PDQ hash was left out."""

    registration: EntryRegistered
    warning: str | None


def image_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """The files given, and the image and video files under the folders given, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
            )
        else:
            yield path


def hash_file(
    data: bytes,
    bank: str,
    quality_floor: int,
    labels: dict[str, str] | None = None,
    models: SignalModels | None = None,
) -> Hashed:
    """The registration for one image's bytes: :func:`measure`, then :func:`registration`.

    Raises:
        MediaUndecodableError: the bytes are not a decodable image.
    """
    return registration(measure_media(data, models), bank, quality_floor, labels)


@dataclass(frozen=True)
class Measured:
    """What is kept of one protected image, before any bank's policy applies: no pixels."""

    files: FileDigests
    signals: ReferenceSignals


@dataclass(frozen=True)
class MeasuredVideo:
    """What is kept of one protected video: file digests, the frames kept and their views."""

    files: FileDigests
    frames: list[Kept]


def measure_media(data: bytes, models: SignalModels | None = None) -> Measured | MeasuredVideo:
    """:func:`measure` for an image; for a video, its digests and densely hashed frames.

    Raises:
        MediaUndecodableError: the bytes are neither a decodable image nor a decodable video.
    """
    container = container_of(data)
    if container is None:
        return measure(data, models)
    return MeasuredVideo(digests(data), reference_frames(data, container, _VIDEO_LIMITS))


def measure(data: bytes, models: SignalModels | None = None) -> Measured:
    """Digests of the bytes, PDQ of the image and its reference crops, embedding and keypoints.

    Local work only, so a command can check every file before it contacts Kafka. The image is
    decoded at full size: registration is rare, and PDQ of the whole image is exactly what
    partner hash lists hold for it.

    Raises:
        MediaUndecodableError: the bytes are not a decodable image.
    """
    image = decode(data, _MAX_PIXELS)
    signals = reference_signals(image.pixels, models or SignalModels(), image.stored_colours)
    return Measured(digests(data), signals)


def registration(
    measured: Measured | MeasuredVideo,
    bank: str,
    quality_floor: int,
    labels: dict[str, str] | None = None,
) -> Hashed:
    """The registration of a measured image (or video) in ``bank``.

    PDQ hashes under ``quality_floor`` (flat or featureless views) would match unrelated uploads
    and are left out; an image whose own PDQ is under the floor is registered by digests,
    embedding and keypoints only.
    """
    if isinstance(measured, MeasuredVideo):
        return _video_registration(measured, bank, quality_floor, labels)
    files, signals = measured.files, measured.signals
    keep = [
        code
        for code, quality in zip(signals.pdq, signals.pdq_quality, strict=True)
        if quality >= quality_floor
    ]
    entry = EntryRegistered(
        entry_id=entry_id_for(bank, files.sha256),
        bank=bank,
        signals=Signals(
            pdq=keep if signals.pdq_quality[0] >= quality_floor else [],
            sha256=files.sha256,
            md5=files.md5,
            embedding=[embedding_to_text(vector) for vector in signals.embeddings],
            keypoints=keypoints_to_text(signals.keypoints) if signals.keypoints else None,
        ),
        labels=labels or {},
    )
    warning = None
    if signals.pdq_quality[0] < quality_floor:
        warning = f"PDQ quality {signals.pdq_quality[0]} < {quality_floor}: registered without PDQ"
    return Hashed(entry, warning)


def _video_registration(
    measured: MeasuredVideo, bank: str, quality_floor: int, labels: dict[str, str] | None
) -> Hashed:
    """A video's frames of PDQ quality at or over the floor, their views, and its file digests."""
    files = measured.files
    kept = [frame for frame in measured.frames if frame.feature.quality >= quality_floor]
    views = dict.fromkeys(view for frame in kept for view in frame.views)  # once each, in order
    entry = EntryRegistered(
        entry_id=entry_id_for(bank, files.sha256),
        bank=bank,
        signals=Signals(
            vpdq=[frame.feature.compact() for frame in kept],
            frame_views=list(views),
            sha256=files.sha256,
            md5=files.md5,
        ),
        labels=labels or {},
    )
    warning = None if kept else f"no frame of PDQ quality >= {quality_floor}: digests only"
    return Hashed(entry, warning)


def entry_id_for(bank: str, sha256: str) -> str:
    """The entry id of a file in a bank: stable, and reveals nothing beyond the digest."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eraser:{bank}:{sha256}"))

"""Turns protected images and videos into registrations: hashes computed locally, media dropped.

Behind ``eraser register`` and the admin API's image upload. The bytes are hashed with the same
decoders and PDQ code as ingest and never kept or sent anywhere; only the resulting
``eraser.registration.v1`` is published (``admin/publishing.py``). A video is registered by its
frames, hashed densely (``ingest/video_signals.py``), and its file digests. Entry ids are derived
from (bank, SHA-256), so registering the same file twice updates one entry. Registered with faces,
a photograph also gives one entry per chosen face (its embedding only), and all the entries of one
child share a subject id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from services.ingest.decoding import decode
from services.ingest.faces import Detected, Face, FaceModels
from services.ingest.hashing import FileDigests, digests
from services.ingest.signals import ReferenceSignals, SignalModels, reference_signals
from services.ingest.video import VideoLimits, container_of
from services.ingest.video_signals import Kept, reference_frames
from services.shared.errors import PoisonError
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
    """What is kept of one protected image, before any bank's policy applies: no pixels.

    ``faces`` are the embeddings of the faces chosen to register, with their boxes.
    """

    files: FileDigests
    signals: ReferenceSignals
    faces: tuple[Face, ...] = ()


class FaceChoiceError(PoisonError):
    """A photograph registered with faces has no face, or several and none was picked."""


@dataclass(frozen=True)
class MeasuredVideo:
    """What is kept of one protected video: file digests, the frames kept and their views."""

    files: FileDigests
    frames: list[Kept]


def measure_media(
    data: bytes, models: SignalModels | None = None, faces: bool = False, face: int | None = None
) -> Measured | MeasuredVideo:
    """:func:`measure` for an image; for a video, its digests and densely hashed frames.

    Raises:
        MediaUndecodableError: the bytes are neither a decodable image nor a decodable video.
        FaceChoiceError: faces were asked of a video (a child's face is registered from a
            photograph the registrant has looked at, never picked out of a video's frames).
    """
    container = container_of(data)
    if container is None:
        return measure(data, models, faces, face)
    if faces:
        raise FaceChoiceError("a video: register the child's face from a photograph")
    return MeasuredVideo(digests(data), reference_frames(data, container, _VIDEO_LIMITS))


def measure(
    data: bytes, models: SignalModels | None = None, faces: bool = False, face: int | None = None
) -> Measured:
    """Digests of the bytes, PDQ of the image and its reference crops, embedding and keypoints.

    With ``faces`` (and face models), also the embedding of its one face, or of face number
    ``face`` (counted from 1, largest first) when it has several: a group photograph is refused
    unless a face is picked, so no other child's face is ever registered. Local work only, so a
    command can check every file before it contacts Kafka. The image is decoded at full size:
    registration is rare, and PDQ of the whole image is exactly what partner hash lists hold.

    Raises:
        MediaUndecodableError: the bytes are not a decodable image.
        FaceChoiceError: faces are asked for and cannot be chosen.
    """
    models = models or SignalModels()
    image = decode(data, _MAX_PIXELS)
    chosen_faces: list[Face] = []
    if faces and models.faces is not None:
        found = models.faces.detect(image.pixels)
        chosen = [_chosen(found, face)]
        chosen_faces = [
            Face(f.box, f.score, v)
            for f, v in zip(chosen, models.faces.embed(image.pixels, chosen), strict=True)
        ]
    signals = reference_signals(image.pixels, models, image.stored_colours)
    return Measured(digests(data), signals, tuple(chosen_faces))


def _chosen(found: list[Detected], face: int | None) -> Detected:
    if not found:
        raise FaceChoiceError("no face found")
    if face is None and len(found) > 1:
        raise FaceChoiceError(
            f"{len(found)} faces: pick the child's with --face N (--preview DIR numbers them); "
            "no other face is registered"
        )
    number = face or 1
    if not 1 <= number <= len(found):
        raise FaceChoiceError(f"no face {number}: the photograph has {len(found)}")
    return found[number - 1]


def face_entries(
    measured: Measured, bank: str, subject: str, labels: dict[str, str] | None = None
) -> list[EntryRegistered]:
    """One entry per chosen face, of ``subject``: its embedding only, never the crop."""
    return [
        EntryRegistered(
            entry_id=entry_id_for(
                bank, f"{measured.files.sha256}:face:{','.join(map(str, face.box))}"
            ),
            bank=bank,
            signals=Signals(face=embedding_to_text(face.embedding)),
            labels=labels or {},
            subject=subject,
        )
        for face in measured.faces
    ]


def preview(data: bytes, models: FaceModels, path: Path) -> int:
    """Write the photograph with its faces boxed and numbered to ``path`` (a local PNG).

    For the person registering, to pick the child's face with ``--face N``; nothing is sent or
    kept. Returns how many faces there are.
    """
    image = decode(data, _MAX_PIXELS)
    found = models.detect(image.pixels)
    picture = Image.fromarray(image.pixels)
    draw = ImageDraw.Draw(picture)
    line = max(2, min(picture.size) // 200)
    for number, face in enumerate(found, start=1):
        x, y, width, height = face.box
        draw.rectangle((x, y, x + width, y + height), outline=(255, 0, 0), width=line)
        draw.text(
            (x + line, y + line), str(number), fill=(255, 0, 0), font_size=max(14, height // 4)
        )
    picture.save(path, "PNG")
    return len(found)


def registration(
    measured: Measured | MeasuredVideo,
    bank: str,
    quality_floor: int,
    labels: dict[str, str] | None = None,
    subject: str | None = None,
) -> Hashed:
    """The registration of a measured image (or video) in ``bank``.

    PDQ hashes under ``quality_floor`` (flat or featureless views) would match unrelated uploads
    and are left out; an image whose own PDQ is under the floor is registered by digests,
    embedding and keypoints only.
    """
    if isinstance(measured, MeasuredVideo):
        return _video_registration(measured, bank, quality_floor, labels, subject)
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
        subject=subject,
    )
    warning = None
    if signals.pdq_quality[0] < quality_floor:
        warning = f"PDQ quality {signals.pdq_quality[0]} < {quality_floor}: registered without PDQ"
    return Hashed(entry, warning)


def _video_registration(
    measured: MeasuredVideo,
    bank: str,
    quality_floor: int,
    labels: dict[str, str] | None,
    subject: str | None,
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
        subject=subject,
    )
    warning = None if kept else f"no frame of PDQ quality >= {quality_floor}: digests only"
    return Hashed(entry, warning)


def entry_id_for(bank: str, sha256: str) -> str:
    """The entry id of a file in a bank: stable, and reveals nothing beyond the digest."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eraser:{bank}:{sha256}"))

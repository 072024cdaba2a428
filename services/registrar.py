"""Turns protected images into registrations: hashes computed locally, the image dropped.

Behind ``eraser register`` and the admin API's image upload. The bytes are hashed with the same
decoder and PDQ code as ingest and never kept or sent anywhere; only the resulting
``eraser.registration.v1`` is published (``admin/publishing.py``). Entry ids are derived from
(bank, SHA-256), so registering the same file twice updates one entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.ingest.decoding import decode
from services.ingest.hashing import FileDigests, digests
from services.ingest.signals import ReferenceSignals, SignalModels, reference_signals
from services.shared.keypoints import keypoints_to_text
from services.shared.schemas import EntryRegistered, Signals, embedding_to_text

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Registration is an operator's action on their own files; the limit only guards against mistakes.
_MAX_PIXELS = 200_000_000


@dataclass(frozen=True)
class Hashed:
    """A registration built from a file, and a note if its PDQ hash was left out."""

    registration: EntryRegistered
    warning: str | None


def image_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """The files given, and the image files under the folders given, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
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
    return registration(measure(data, models), bank, quality_floor, labels)


@dataclass(frozen=True)
class Measured:
    """What is kept of one protected image, before any bank's policy applies: no pixels."""

    files: FileDigests
    signals: ReferenceSignals


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
    measured: Measured, bank: str, quality_floor: int, labels: dict[str, str] | None = None
) -> Hashed:
    """The registration of a measured image in ``bank``.

    PDQ hashes under ``quality_floor`` (flat or featureless views) would match unrelated uploads
    and are left out; an image whose own PDQ is under the floor is registered by digests,
    embedding and keypoints only.
    """
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


def entry_id_for(bank: str, sha256: str) -> str:
    """The entry id of a file in a bank: stable, and reveals nothing beyond the digest."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eraser:{bank}:{sha256}"))

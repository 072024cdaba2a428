"""What a reviewer sees beside an item: the upload, fetched now and never kept, and the match.

The upload is fetched from the platform (``ERASER_REVIEW_MEDIA_URL`` with the content id in it)
through ingest's SSRF-safe fetcher, decoded with ingest's limits, and re-encoded as a JPEG without
metadata: blurred and grey unless revealed. Nothing is written to disk or logged. The registered
photo is never shown: eraser has none.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple
from urllib.parse import quote

from kafka import KafkaConsumer, TopicPartition
from PIL import Image, ImageDraw, ImageFilter

from services.admin.view import Slot
from services.ingest.decoding import decode
from services.ingest.fetching import MediaFetcher
from services.shared.config import KafkaSettings
from services.shared.errors import PoisonError
from services.shared.schemas import (
    ActionDecided,
    BankPolicy,
    EntryRegistered,
    FaceBox,
    UploadReceived,
    parse_event,
)

SHOWN_SIDE = 720
BLUR_RADIUS = 18


class EvidenceUnavailable(Exception):
    """The upload could not be fetched or decoded; the message says why (no URL in it)."""


class Registration(NamedTuple):
    """When an entry was registered, and its labels."""

    at: datetime
    labels: dict[str, str]


class Evidence:
    """Fetches an item's upload at view time."""

    def __init__(self, fetcher: MediaFetcher, url_template: str | None, max_pixels: int) -> None:
        self._fetcher = fetcher
        self._template = url_template
        self._max_pixels = max_pixels

    def media(self, content_id: str) -> bytes:
        """The upload's bytes, as the platform serves them now."""
        if self._template is None:
            raise EvidenceUnavailable("no media address is configured (ERASER_REVIEW_MEDIA_URL)")
        url = self._template.replace("{content_id}", quote(content_id, safe=""))
        try:
            return self._fetcher.fetch(UploadReceived(content_id=content_id, media_url=url)).data
        except PoisonError as error:
            raise EvidenceUnavailable(f"the upload could not be fetched: {error.reason}") from None

    def picture(self, content_id: str, blurred: bool, face: FaceBox | None = None) -> bytes:
        """The upload as a JPEG at most 720 px, blurred and grey if ``blurred``.

        The matched ``face``, if any, is outlined, so the reviewer knows where to look.
        """
        try:
            decoded = decode(self.media(content_id), self._max_pixels, reduce_to=SHOWN_SIDE)
        except PoisonError as error:
            raise EvidenceUnavailable(f"the upload is not a picture: {error.reason}") from None
        image = Image.fromarray(decoded.pixels)
        image.thumbnail((SHOWN_SIDE, SHOWN_SIDE))
        if blurred:
            image = image.convert("L").filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        if face is not None:
            image = image.convert("RGB")  # the outline is the one colour on a grey picture
            scale = image.width / decoded.width
            corners = [face.x, face.y, face.x + face.width, face.y + face.height]
            ImageDraw.Draw(image).rectangle(
                [round(value * scale) for value in corners], outline=(255, 200, 0), width=3
            )
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()


def measures(action: ActionDecided, policy: BankPolicy) -> list[tuple[str, str, str]]:
    """(signal, what was measured, the bank's thresholds) for the signal behind the action."""
    distance = action.distance
    if action.signal == "pdq":
        return [
            (
                "pdq",
                f"distance {distance} of 256 bits",
                f"matches at <= {policy.pdq_threshold}, acts unreviewed at <= "
                f"{policy.auto_threshold}",
            )
        ]
    if action.signal == "embedding":
        return [
            (
                "embedding",
                f"cosine {1 - distance / 100:.2f}",
                f"matches alone at >= {policy.embedding_threshold:.2f}",
            )
        ]
    if action.signal == "keypoints":
        return [
            (
                "keypoints",
                f"{256 - distance} keypoints agree",
                f"matches at >= {policy.keypoint_threshold}",
            )
        ]
    if action.signal == "face":
        where = f", face at {_box(action)}" if action.face else ""
        return [
            (
                "face",
                f"similarity {1 - distance / 100:.2f}{where}",
                f"matches at >= {policy.face_threshold:.2f}; alone, always reviewed",
            )
        ]
    return [(action.signal, f"distance {distance}", "exact")]


def _box(action: ActionDecided) -> str:
    box = action.face.box if action.face else None
    return f"({box.x}, {box.y}), {box.width} x {box.height} px" if box else ""


RegistrationLookup = Callable[[Slot], Registration | None]


def registry_lookup(kafka: KafkaSettings, topic: str) -> RegistrationLookup:
    """Reads the one registry record an index slot points at (its time and labels)."""

    def lookup(slot: Slot) -> Registration | None:
        consumer = KafkaConsumer(enable_auto_commit=False, **kafka.client_options())
        try:
            partition = TopicPartition(topic, slot.partition)
            consumer.assign([partition])
            consumer.seek(partition, slot.offset)
            for record in consumer.poll(timeout_ms=2000).get(partition, []):
                if record.offset == slot.offset and record.value is not None:
                    event = parse_event(record.value, EntryRegistered)
                    return Registration(event.time, dict(event.data.labels))
            return None
        except PoisonError:
            return None
        finally:
            consumer.close(autocommit=False)

    return lookup
